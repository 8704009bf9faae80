/*
 * The per-record and per-handshake cryptography of Portcullis's DTLS 1.2 server, on Node's own OpenSSL.
 *
 * Why native: through node:crypto every record costs a new Cipher object, an OpenSSL cipher fetch and five
 * JS<->C++ calls (~7 us per seal+open here), and every handshake some twenty Hmac/Hash objects for the PRF,
 * the cookie and the transcript (~75 us). Here one OpenSSL context per (AEAD, direction) is re-keyed per record
 * (~1 us per seal+open), and HMAC-SHA256 runs on SHA-256 states with the key's pads absorbed once per PRF call.
 * Keys stay with the caller: a session holds no native memory. The OpenSSL symbols are Node's own (static builds
 * export them; Debian's nodejs links libcrypto), so nothing is linked here.
 *
 *   seal(gcm, keySalt[20], explicitNonce[8], aad, plaintext, out, offset) -> bytes written at out[offset]:
 *        explicit_nonce || ciphertext || tag            (RFC 6655 AES-128-CCM_8, RFC 5288 AES-128-GCM)
 *   open(gcm, keySalt[20], fragment, aad, out) -> true when the record authenticates; out (exactly the
 *        plaintext length) then holds the plaintext, else it is zeroed
 *   prf(secret, labelAndSeed, out)          TLS 1.2 PRF with SHA-256 (RFC 5246 section 5), out.length bytes
 *   hmacSha256(key, out[32], ...parts)      HMAC-SHA256 of the concatenated parts
 *   sha256(parts[], out[32])                SHA-256 of the concatenated parts (the handshake transcript)
 */
/* SHA256_* are deprecated for applications in OpenSSL 3, but no EVP call avoids a fetch per HMAC. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 16
#define SALT_LEN 4
#define EXPLICIT_LEN 8
#define IV_LEN (SALT_LEN + EXPLICIT_LEN)
/* Bounds from RFC 6347 (a record's fragment is at most 2^14 + 2048 bytes) and RFC 9146 (the largest AAD is
 * 23 bytes plus a 255-byte Connection ID); anything larger is a caller's bug. */
#define MAX_FRAGMENT ((1 << 14) + 2048)
#define MAX_AAD (23 + 255)

typedef struct {
  EVP_CIPHER_CTX *ctx[2][2]; /* [gcm][encrypt] */
} contexts_t;

/* OpenSSL treats a NULL input as "no data" and would skip CCM's authentication: never pass one. */
static const unsigned char no_bytes[1] = {0};

static void free_contexts(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  contexts_t *c = data;
  for (int g = 0; g < 2; g++)
    for (int e = 0; e < 2; e++) EVP_CIPHER_CTX_free(c->ctx[g][e]);
  free(c);
}

static EVP_CIPHER_CTX *context(napi_env env, int gcm, int enc) {
  contexts_t *c = NULL;
  if (napi_get_instance_data(env, (void **)&c) != napi_ok || c == NULL) return NULL;
  if (c->ctx[gcm][enc] != NULL) return c->ctx[gcm][enc];
  EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
  /* The nonce length (and CCM's tag length) must be set before a key; they then hold for every record. */
  if (x == NULL || !EVP_CipherInit_ex(x, gcm ? EVP_aes_128_gcm() : EVP_aes_128_ccm(), NULL, NULL, NULL, enc) ||
      !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, IV_LEN, NULL) ||
      (!gcm && !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 8, NULL))) {
    EVP_CIPHER_CTX_free(x);
    ERR_clear_error();
    return NULL;
  }
  c->ctx[gcm][enc] = x;
  return x;
}

static napi_value fail(napi_env env, const char *code, const char *message, int type_error) {
  if (type_error)
    napi_throw_type_error(env, code, message);
  else
    napi_throw_error(env, code, message);
  return NULL;
}

static int buffer_arg(napi_env env, napi_value v, unsigned char **data, size_t *len) {
  bool is = false;
  void *p = NULL;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is || napi_get_buffer_info(env, v, &p, len) != napi_ok) return 0;
  *data = *len > 0 ? p : (unsigned char *)no_bytes;
  return 1;
}

static napi_value seal(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  bool gcm = false;
  unsigned char *key_salt = NULL, *explicit_nonce = NULL, *aad = NULL, *pt = NULL, *out = NULL;
  size_t key_salt_len = 0, explicit_len = 0, aad_len = 0, pt_len = 0, out_len = 0;
  uint32_t offset = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 7 ||
      napi_get_value_bool(env, argv[0], &gcm) != napi_ok || !buffer_arg(env, argv[1], &key_salt, &key_salt_len) ||
      !buffer_arg(env, argv[2], &explicit_nonce, &explicit_len) || !buffer_arg(env, argv[3], &aad, &aad_len) ||
      !buffer_arg(env, argv[4], &pt, &pt_len) || !buffer_arg(env, argv[5], &out, &out_len) ||
      napi_get_value_uint32(env, argv[6], &offset) != napi_ok)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT",
                "seal(gcm, keySalt, explicitNonce, aad, plaintext, out, offset): wrong argument types", 1);
  size_t tag_len = gcm ? 16 : 8;
  if (key_salt_len != KEY_LEN + SALT_LEN || explicit_len != EXPLICIT_LEN || aad_len > MAX_AAD || pt_len > MAX_FRAGMENT ||
      offset > out_len || out_len - offset < EXPLICIT_LEN + pt_len + tag_len)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "seal: wrong key, nonce or AAD length, or no room in out", 1);
  EVP_CIPHER_CTX *x = context(env, gcm, 1);
  if (x == NULL) return fail(env, "ERR_DTLS_CRYPTO_OPENSSL", "OpenSSL could not make an AEAD context", 0);
  unsigned char iv[IV_LEN];
  memcpy(iv, key_salt + KEY_LEN, SALT_LEN);
  memcpy(iv + SALT_LEN, explicit_nonce, EXPLICIT_LEN);
  unsigned char *o = out + offset;
  int n = 0, m = 0;
  int ok = EVP_CipherInit_ex(x, NULL, NULL, key_salt, iv, 1) &&
           /* CCM authenticates the message length first, so it must be known before the AAD. */
           (gcm || EVP_CipherUpdate(x, NULL, &n, NULL, (int)pt_len)) &&
           EVP_CipherUpdate(x, NULL, &n, aad, (int)aad_len) &&
           EVP_CipherUpdate(x, o + EXPLICIT_LEN, &n, pt, (int)pt_len) &&
           EVP_CipherFinal_ex(x, o + EXPLICIT_LEN + n, &m) && (size_t)(n + m) == pt_len &&
           EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, (int)tag_len, o + EXPLICIT_LEN + pt_len);
  if (!ok) {
    ERR_clear_error();
    return fail(env, "ERR_DTLS_CRYPTO_OPENSSL", "OpenSSL failed to seal a record", 0);
  }
  memcpy(o, explicit_nonce, EXPLICIT_LEN);
  napi_value r;
  napi_create_uint32(env, (uint32_t)(EXPLICIT_LEN + pt_len + tag_len), &r);
  return r;
}

static napi_value open_record(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  bool gcm = false;
  unsigned char *key_salt = NULL, *frag = NULL, *aad = NULL, *out = NULL;
  size_t key_salt_len = 0, frag_len = 0, aad_len = 0, out_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 ||
      napi_get_value_bool(env, argv[0], &gcm) != napi_ok || !buffer_arg(env, argv[1], &key_salt, &key_salt_len) ||
      !buffer_arg(env, argv[2], &frag, &frag_len) || !buffer_arg(env, argv[3], &aad, &aad_len) ||
      !buffer_arg(env, argv[4], &out, &out_len))
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "open(gcm, keySalt, fragment, aad, out): wrong argument types", 1);
  size_t tag_len = gcm ? 16 : 8;
  if (key_salt_len != KEY_LEN + SALT_LEN || aad_len > MAX_AAD || frag_len > MAX_FRAGMENT ||
      frag_len < EXPLICIT_LEN + tag_len || out_len != frag_len - EXPLICIT_LEN - tag_len)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "open: wrong key or AAD length, or out is not the plaintext length",
                1);
  EVP_CIPHER_CTX *x = context(env, gcm, 0);
  if (x == NULL) return fail(env, "ERR_DTLS_CRYPTO_OPENSSL", "OpenSSL could not make an AEAD context", 0);
  const unsigned char *ct = out_len > 0 ? frag + EXPLICIT_LEN : no_bytes;
  unsigned char *tag = frag + EXPLICIT_LEN + out_len;
  unsigned char iv[IV_LEN];
  memcpy(iv, key_salt + KEY_LEN, SALT_LEN);
  memcpy(iv + SALT_LEN, frag, EXPLICIT_LEN);
  int n = 0, m = 0, ok;
  if (gcm) {
    ok = EVP_CipherInit_ex(x, NULL, NULL, key_salt, iv, 0) && EVP_CipherUpdate(x, NULL, &n, aad, (int)aad_len) &&
         EVP_CipherUpdate(x, out, &n, ct, (int)out_len) &&
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, (int)tag_len, tag) && EVP_CipherFinal_ex(x, out + n, &m) > 0;
  } else {
    /* CCM checks the tag inside the one update that decrypts; the tag must be in place before it. */
    ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, (int)tag_len, tag) &&
         EVP_CipherInit_ex(x, NULL, NULL, key_salt, iv, 0) && EVP_CipherUpdate(x, NULL, &n, NULL, (int)out_len) &&
         EVP_CipherUpdate(x, NULL, &n, aad, (int)aad_len) && EVP_CipherUpdate(x, out, &n, ct, (int)out_len) > 0;
  }
  if (!ok) {
    /* Unauthenticated plaintext never leaves; nor does a stale error for node:crypto's next caller. */
    if (out_len > 0) memset(out, 0, out_len);
    ERR_clear_error();
  }
  napi_value r;
  napi_get_boolean(env, ok ? true : false, &r);
  return r;
}


/* ------------------------------------------------------------------ HMAC-SHA256 and the TLS 1.2 PRF */

#define SHA256_BLOCK 64
#define MAX_PRF_OUTPUT 256
#define MAX_HASH_PARTS 64

typedef struct {
  SHA256_CTX inner, outer;
} hmac_key_t;

static void hmac_key(hmac_key_t *h, const unsigned char *key, size_t key_len) {
  unsigned char k[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK];
  if (key_len > SHA256_BLOCK) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, key, key_len);
    SHA256_Final(k, &c);
  } else {
    memcpy(k, key, key_len);
  }
  for (int i = 0; i < SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x36;
  SHA256_Init(&h->inner);
  SHA256_Update(&h->inner, pad, SHA256_BLOCK);
  for (int i = 0; i < SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x5c;
  SHA256_Init(&h->outer);
  SHA256_Update(&h->outer, pad, SHA256_BLOCK);
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
}

/* HMAC over a || b (b may be empty). */
static void hmac2(const hmac_key_t *h, const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len,
                  unsigned char out[SHA256_DIGEST_LENGTH]) {
  SHA256_CTX c = h->inner;
  SHA256_Update(&c, a, a_len);
  if (b_len > 0) SHA256_Update(&c, b, b_len);
  SHA256_Final(out, &c);
  c = h->outer;
  SHA256_Update(&c, out, SHA256_DIGEST_LENGTH);
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof c);
}

static napi_value prf(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  unsigned char *secret = NULL, *label_seed = NULL, *out = NULL;
  size_t secret_len = 0, label_seed_len = 0, out_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      !buffer_arg(env, argv[0], &secret, &secret_len) || !buffer_arg(env, argv[1], &label_seed, &label_seed_len) ||
      !buffer_arg(env, argv[2], &out, &out_len))
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "prf(secret, labelAndSeed, out): wrong argument types", 1);
  if (out_len == 0 || out_len > MAX_PRF_OUTPUT || label_seed_len > 1024)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "prf: out must be 1..256 bytes, labelAndSeed at most 1024", 1);
  hmac_key_t h;
  hmac_key(&h, secret, secret_len);
  /* P_SHA256: A(0) = seed, A(i) = HMAC(secret, A(i-1)), output = HMAC(secret, A(1) || seed) || ... */
  unsigned char a[SHA256_DIGEST_LENGTH], block[SHA256_DIGEST_LENGTH];
  hmac2(&h, label_seed, label_seed_len, NULL, 0, a);
  for (size_t filled = 0; filled < out_len;) {
    hmac2(&h, a, sizeof a, label_seed, label_seed_len, block);
    size_t n = out_len - filled < sizeof block ? out_len - filled : sizeof block;
    memcpy(out + filled, block, n);
    filled += n;
    if (filled < out_len) hmac2(&h, a, sizeof a, NULL, 0, a);
  }
  OPENSSL_cleanse(&h, sizeof h);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(block, sizeof block);
  return NULL;
}

static napi_value hmac_sha256(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  unsigned char *key = NULL, *out = NULL;
  size_t key_len = 0, out_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || argc > 6 ||
      !buffer_arg(env, argv[0], &key, &key_len) || !buffer_arg(env, argv[1], &out, &out_len) ||
      out_len != SHA256_DIGEST_LENGTH)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "hmacSha256(key, out[32], ...parts): wrong arguments", 1);
  hmac_key_t h;
  hmac_key(&h, key, key_len);
  SHA256_CTX c = h.inner;
  for (size_t i = 2; i < argc; i++) {
    unsigned char *part = NULL;
    size_t part_len = 0;
    if (!buffer_arg(env, argv[i], &part, &part_len)) {
      OPENSSL_cleanse(&h, sizeof h);
      OPENSSL_cleanse(&c, sizeof c);
      return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "hmacSha256: every part must be a Buffer", 1);
    }
    if (part_len > 0) SHA256_Update(&c, part, part_len);
  }
  SHA256_Final(out, &c);
  c = h.outer;
  SHA256_Update(&c, out, SHA256_DIGEST_LENGTH);
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&h, sizeof h);
  OPENSSL_cleanse(&c, sizeof c);
  return NULL;
}

static napi_value sha256(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  unsigned char *out = NULL;
  size_t out_len = 0;
  uint32_t count = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok || count > MAX_HASH_PARTS ||
      !buffer_arg(env, argv[1], &out, &out_len) || out_len != SHA256_DIGEST_LENGTH)
    return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "sha256(parts[<=64], out[32]): wrong arguments", 1);
  SHA256_CTX c;
  SHA256_Init(&c);
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    unsigned char *part = NULL;
    size_t part_len = 0;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || !buffer_arg(env, v, &part, &part_len))
      return fail(env, "ERR_DTLS_CRYPTO_ARGUMENT", "sha256: every part must be a Buffer", 1);
    if (part_len > 0) SHA256_Update(&c, part, part_len);
  }
  SHA256_Final(out, &c);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  /* One set of contexts per Node environment: worker threads each get their own. */
  contexts_t *c = calloc(1, sizeof *c);
  if (c == NULL || napi_set_instance_data(env, c, free_contexts, NULL) != napi_ok) {
    free(c);
    napi_throw_error(env, "ERR_DTLS_CRYPTO_OPENSSL", "out of memory");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"seal", NULL, seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, open_record, NULL, NULL, NULL, napi_enumerable, NULL},
      {"prf", NULL, prf, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacSha256", NULL, hmac_sha256, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sha256", NULL, sha256, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
