{
  "targets": [
    {
      "target_name": "dtls_crypto",
      "sources": ["src/dtls_crypto.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
