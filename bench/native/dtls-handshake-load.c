/*
 * The handshake load generator of `npm run bench -- dtls` (issue 3, issue 22): DTLS 1.2 client handshakes on
 * OpenSSL's client API from THREADS threads for SECONDS seconds, each ended with close_notify, so that the
 * generator costs a fraction of what the JavaScript one did and neither server is generator-bound.
 *
 *   dtls-handshake-load HOST PORT MODE SECONDS THREADS [psk IDENTITY KEY] [cert CERT KEY]
 *
 * MODE: psk (PSK-AES128-CCM8), ecdhe (ECDHE-ECDSA-AES128-CCM8 with a client certificate), psk-resume (one
 * full PSK handshake per thread, then abbreviated handshakes resuming its session by session ID; a thread
 * whose resumption is declined counts an error and keeps the new session). Prints one JSON line:
 * {"ops":N,"errors":N,"resumed":N,"seconds":S,"cpuMs":C} (C: this process's own CPU time).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static struct sockaddr_in server;
static SSL_CTX *ctx;
static const char *psk_identity = "bench";
static const char *psk_key = "";
static int resume_mode;
static double deadline;
static atomic_long ops, errors, resumed;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned int psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int id_max, unsigned char *psk,
                           unsigned int psk_max) {
  (void)ssl; (void)hint;
  size_t n = strlen(psk_key);
  if (strlen(psk_identity) >= id_max || n > psk_max) return 0;
  strcpy(identity, psk_identity);
  memcpy(psk, psk_key, n);
  return (unsigned int)n;
}

/* One handshake and close_notify; returns the session to resume next (resume mode), or NULL. */
static SSL_SESSION *one(SSL_SESSION *resume, int *ok, int *reused) {
  *ok = 0;
  *reused = 0;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return resume;
  if (connect(fd, (struct sockaddr *)&server, sizeof server) != 0) {
    close(fd);
    return resume;
  }
  SSL *ssl = SSL_new(ctx);
  BIO *bio = BIO_new_dgram(fd, BIO_CLOSE);
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &server);
  struct timeval tv = {2, 0};
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_RECV_TIMEOUT, 0, &tv);
  SSL_set_bio(ssl, bio, bio);
  if (resume) SSL_set_session(ssl, resume);
  SSL_SESSION *next = resume;
  if (SSL_connect(ssl) == 1) {
    *ok = 1;
    *reused = SSL_session_reused(ssl);
    if (resume_mode && !*reused) {
      if (next) SSL_SESSION_free(next);
      next = SSL_get1_session(ssl);
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();
  return next;
}

static void *worker(void *arg) {
  (void)arg;
  SSL_SESSION *session = NULL;
  int first = 1;
  while (now() < deadline) {
    int ok, reused;
    session = one(resume_mode ? session : NULL, &ok, &reused);
    if (!ok) atomic_fetch_add(&errors, 1);
    else if (resume_mode && first) first = 0; /* the full handshake that makes the session is not counted */
    else {
      atomic_fetch_add(&ops, 1);
      if (reused) atomic_fetch_add(&resumed, 1);
      else if (resume_mode) atomic_fetch_add(&errors, 1);
    }
  }
  if (session) SSL_SESSION_free(session);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s HOST PORT psk|ecdhe|psk-resume SECONDS THREADS [psk ID KEY] [cert CERT KEY]\n", argv[0]);
    return 64;
  }
  memset(&server, 0, sizeof server);
  server.sin_family = AF_INET;
  server.sin_port = htons((unsigned short)atoi(argv[2]));
  inet_pton(AF_INET, argv[1], &server.sin_addr);
  const char *mode = argv[3];
  double seconds = atof(argv[4]);
  int threads = atoi(argv[5]);
  ctx = SSL_CTX_new(DTLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  for (int i = 6; i < argc; i++) {
    if (!strcmp(argv[i], "psk") && i + 2 < argc) {
      psk_identity = argv[i + 1];
      psk_key = argv[i + 2];
      i += 2;
    } else if (!strcmp(argv[i], "cert") && i + 2 < argc) {
      if (SSL_CTX_use_certificate_file(ctx, argv[i + 1], SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx, argv[i + 2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "cannot load the client certificate\n");
        return 2;
      }
      i += 2;
    }
  }
  if (!strcmp(mode, "ecdhe")) {
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-CCM8");
  } else {
    SSL_CTX_set_cipher_list(ctx, "PSK-AES128-CCM8");
    SSL_CTX_set_psk_client_callback(ctx, psk_cb);
    resume_mode = !strcmp(mode, "psk-resume");
  }
  double start = now();
  deadline = start + seconds;
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  printf("{\"ops\":%ld,\"errors\":%ld,\"resumed\":%ld,\"seconds\":%.3f,\"cpuMs\":%.1f}\n", atomic_load(&ops),
         atomic_load(&errors), atomic_load(&resumed), now() - start, cpu);
  SSL_CTX_free(ctx);
  return 0;
}
