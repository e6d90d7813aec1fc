/*
 * p11emu: a PKCS#11 library that behaves like a vendor's HSM, for tests.
 *
 * It loads a real module (SoftHSM2 by default), forwards every call through its own
 * CK_FUNCTION_LIST and imposes, by configuration, what production HSMs do differently:
 * vendor AES-GCM IV handling, hidden or renumbered mechanisms, vendor return codes, session
 * rules, PIN formats, template rules, network latency and faults. See README.md beside this file
 * for every option and the public source of each vendor behaviour.
 *
 * Configuration: a key=value file named by P11EMU_CONFIG, read at C_GetFunctionList and
 * C_Initialize and re-read whenever its mtime or size changes (checked on every call), so a test
 * can command faults while a daemon runs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* The OASIS headers pkcs11js ships (node_modules/pkcs11js/includes/pkcs11) define the platform macros. */
#include "pkcs11.h"

#define EXPORT __attribute__((visibility("default")))

/* Every PKCS#11 2.40 function, in CK_FUNCTION_LIST order; an id per function for option lists. */
#define EMU_FUNCS                                                                                  \
  X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList)                 \
  X(C_GetSlotInfo) X(C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo) X(C_InitToken)    \
  X(C_InitPIN) X(C_SetPIN) X(C_OpenSession) X(C_CloseSession) X(C_CloseAllSessions)                \
  X(C_GetSessionInfo) X(C_GetOperationState) X(C_SetOperationState) X(C_Login) X(C_Logout)         \
  X(C_CreateObject) X(C_CopyObject) X(C_DestroyObject) X(C_GetObjectSize) X(C_GetAttributeValue)   \
  X(C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects) X(C_FindObjectsFinal)               \
  X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) X(C_EncryptFinal) X(C_DecryptInit) X(C_Decrypt) \
  X(C_DecryptUpdate) X(C_DecryptFinal) X(C_DigestInit) X(C_Digest) X(C_DigestUpdate)               \
  X(C_DigestKey) X(C_DigestFinal) X(C_SignInit) X(C_Sign) X(C_SignUpdate) X(C_SignFinal)           \
  X(C_SignRecoverInit) X(C_SignRecover) X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate)              \
  X(C_VerifyFinal) X(C_VerifyRecoverInit) X(C_VerifyRecover) X(C_DigestEncryptUpdate)              \
  X(C_DecryptDigestUpdate) X(C_SignEncryptUpdate) X(C_DecryptVerifyUpdate) X(C_GenerateKey)        \
  X(C_GenerateKeyPair) X(C_WrapKey) X(C_UnwrapKey) X(C_DeriveKey) X(C_SeedRandom)                  \
  X(C_GenerateRandom) X(C_GetFunctionStatus) X(C_CancelFunction) X(C_WaitForSlotEvent)

enum {
#define X(n) F_##n,
  EMU_FUNCS
#undef X
      NF
};
static const char *const FNAME[NF] = {
#define X(n) #n,
    EMU_FUNCS
#undef X
};

/* What happens to the IV of a GCM mechanism (README, "AES-GCM modes"). */
enum { GCM_CALLER, GCM_ZERO_BUFFER, GCM_APPENDED, GCM_PREPENDED };
#define CKM_AES_GCM_STD 0x1087UL
#define GCM_IV_GENERATED 12

#define MAX_LIST 32
typedef struct {
  char module[512];
  char log_file[512];
  int gcm_mode;                 /* behaviour of CKM_AES_GCM */
  CK_MECHANISM_TYPE vendor_gcm; /* an extra vendor GCM mechanism (0 = none) */
  int vendor_gcm_mode;
  int strict_iv_bits;     /* ulIvBits must be 8 × ulIvLen */
  CK_ULONG appended_iv_bytes;   /* Luna: generated IV length (16 before firmware 7.9.3) */
  int appended_iv_from_bits;    /* Luna ≥ 7.9.3: ulIvLen 0 + ulIvBits chooses the length */
  CK_MECHANISM_TYPE hidden[MAX_LIST];
  int nhidden;
  CK_MECHANISM_TYPE rename_real[MAX_LIST], rename_as[MAX_LIST];
  int nrename;
  CK_RV decrypt_failure_rv; /* replaces the real module's AEAD failure code on C_Decrypt */
  int refuse_ro_sessions;
  CK_ULONG max_sessions;
  char pin_prefix[128];
  CK_ATTRIBUTE_TYPE keygen_reject[MAX_LIST]; /* attributes refused in an AES C_GenerateKey template */
  int nkeygen_reject;
  int oaep_sha1_only;
  double latency_ms, jitter_ms;
  unsigned char latency_fn[NF];
  double error_rate; /* CKR_DEVICE_ERROR at this rate on error_fn calls */
  unsigned char error_fn[NF];
  long long failover;           /* every change closes all sessions (an HA failover) */
  long long token_absent_until; /* unix ms: the token is away until then */
  long long hang_until;         /* unix ms: hang_fn calls block until then */
  unsigned char hang_fn[NF];
} config;

/* Calls a network HSM client sends to the HSM; the rest is answered locally (README). */
static const char *const DEFAULT_REMOTE =
    "C_Login,C_OpenSession,C_CreateObject,C_CopyObject,C_DestroyObject,C_GetAttributeValue,"
    "C_SetAttributeValue,C_FindObjectsInit,C_Encrypt,C_EncryptFinal,C_Decrypt,C_DecryptFinal,"
    "C_Digest,C_DigestFinal,C_Sign,C_SignFinal,C_Verify,C_VerifyFinal,C_GenerateKey,"
    "C_GenerateKeyPair,C_WrapKey,C_UnwrapKey,C_DeriveKey,C_GenerateRandom";

/* One emulated session. Handles are (generation << 13 | index): never reused, so a stale handle
 * held by the caller after a failover can never name someone else's new session. */
#define SLOTS 8192
typedef struct {
  CK_SESSION_HANDLE handle; /* 0 = free */
  CK_SESSION_HANDLE real;
  CK_SLOT_ID slot;
  unsigned gen;
  /* GCM state between C_xxxInit and C_xxx */
  int op;               /* 0 none, 1 write-back, 2 appended, 3 prepended encrypt, 4 prepended decrypt */
  CK_BYTE_PTR write_iv; /* caller's pIv, written at C_Encrypt time */
  CK_BYTE iv[16];
  CK_ULONG iv_len, tag_bytes;
  CK_OBJECT_HANDLE key;
  CK_BYTE *aad;
  CK_ULONG aad_len;
} session;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static config cfg;
static char cfg_path[512];
static struct timespec cfg_mtime;
static off_t cfg_size = -1;
static long long seen_failover;
static int token_was_absent;
static session sessions[SLOTS];
static CK_ULONG open_sessions;
static void *real_lib;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST emu_list;

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(double ms) {
  if (ms <= 0) return;
  struct timespec t = {(time_t)(ms / 1000), (long)((ms - (double)(long long)(ms / 1000) * 1000) * 1e6)};
  while (nanosleep(&t, &t) == -1 && errno == EINTR) {
  }
}

static double uniform(void) { /* per-thread xorshift: no lock, no shared state */
  static __thread uint64_t s;
  if (!s) s = (uint64_t)(uintptr_t)&s ^ (uint64_t)now_ms() * 0x9E3779B97F4A7C15ULL;
  s ^= s << 13, s ^= s >> 7, s ^= s << 17;
  return (double)(s >> 11) / 9007199254740992.0;
}

static void emu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emu_log(const char *fmt, ...) {
  if (!cfg.log_file[0]) return;
  FILE *f = fopen(cfg.log_file, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static void hex(char *out, const CK_BYTE *b, CK_ULONG n) {
  for (CK_ULONG i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
  out[2 * n] = 0;
}

/* ---------------------------------------------------------------- configuration */

static int parse_list(const char *v, CK_ULONG *out, int max) {
  int n = 0;
  char *end;
  while (*v && n < max) {
    out[n++] = strtoul(v, &end, 0);
    if (end == v) break;
    v = end;
    while (*v == ',' || *v == ' ') v++;
  }
  return n;
}

static void parse_functions(const char *v, unsigned char *set) {
  memset(set, 0, NF);
  if (!strcmp(v, "*")) {
    memset(set, 1, NF);
    return;
  }
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
    for (int i = 0; i < NF; i++)
      if (!strcmp(t, FNAME[i])) set[i] = 1;
}

static int gcm_mode_named(const char *v) {
  if (!strcmp(v, "zero-buffer")) return GCM_ZERO_BUFFER;
  if (!strcmp(v, "appended")) return GCM_APPENDED;
  if (!strcmp(v, "prepended")) return GCM_PREPENDED;
  return GCM_CALLER;
}

static void config_defaults(config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->module, sizeof c->module, "%s", "/usr/lib/softhsm/libsofthsm2.so");
  c->appended_iv_bytes = 16;
  parse_functions(DEFAULT_REMOTE, c->latency_fn);
  parse_functions("*", c->error_fn);
  parse_functions("C_Encrypt,C_Decrypt", c->hang_fn);
}

static void config_set(config *c, const char *k, const char *v) {
  if (!strcmp(k, "module")) snprintf(c->module, sizeof c->module, "%s", v);
  else if (!strcmp(k, "log_file")) snprintf(c->log_file, sizeof c->log_file, "%s", v);
  else if (!strcmp(k, "gcm")) c->gcm_mode = gcm_mode_named(v);
  else if (!strcmp(k, "vendor_gcm")) { /* 0x80001087:prepended */
    c->vendor_gcm = strtoul(v, NULL, 0);
    const char *m = strchr(v, ':');
    c->vendor_gcm_mode = m ? gcm_mode_named(m + 1) : GCM_CALLER;
  } else if (!strcmp(k, "strict_iv_bits")) c->strict_iv_bits = atoi(v);
  else if (!strcmp(k, "appended_iv_bytes")) c->appended_iv_bytes = strtoul(v, NULL, 0);
  else if (!strcmp(k, "appended_iv_from_bits")) c->appended_iv_from_bits = atoi(v);
  else if (!strcmp(k, "hide_mechanisms")) c->nhidden = parse_list(v, c->hidden, MAX_LIST);
  else if (!strcmp(k, "rename_mechanisms")) { /* real:as,real:as */
    CK_ULONG pairs[2 * MAX_LIST];
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *p = buf; *p; p++)
      if (*p == ':') *p = ',';
    int n = parse_list(buf, pairs, 2 * MAX_LIST) / 2;
    for (int i = 0; i < n; i++) c->rename_real[i] = pairs[2 * i], c->rename_as[i] = pairs[2 * i + 1];
    c->nrename = n;
  } else if (!strcmp(k, "decrypt_failure_rv")) c->decrypt_failure_rv = strtoul(v, NULL, 0);
  else if (!strcmp(k, "refuse_ro_sessions")) c->refuse_ro_sessions = atoi(v);
  else if (!strcmp(k, "max_sessions")) c->max_sessions = strtoul(v, NULL, 0);
  else if (!strcmp(k, "pin_prefix")) snprintf(c->pin_prefix, sizeof c->pin_prefix, "%s", v);
  else if (!strcmp(k, "keygen_reject_attributes")) c->nkeygen_reject = parse_list(v, c->keygen_reject, MAX_LIST);
  else if (!strcmp(k, "oaep_sha1_only")) c->oaep_sha1_only = atoi(v);
  else if (!strcmp(k, "latency_ms")) c->latency_ms = atof(v);
  else if (!strcmp(k, "jitter_ms")) c->jitter_ms = atof(v);
  else if (!strcmp(k, "latency_functions")) parse_functions(v, c->latency_fn);
  else if (!strcmp(k, "device_error_rate")) c->error_rate = atof(v);
  else if (!strcmp(k, "device_error_functions")) parse_functions(v, c->error_fn);
  else if (!strcmp(k, "failover")) c->failover = atoll(v);
  else if (!strcmp(k, "token_absent_until")) c->token_absent_until = atoll(v);
  else if (!strcmp(k, "hang_until")) c->hang_until = atoll(v);
  else if (!strcmp(k, "hang_functions")) parse_functions(v, c->hang_fn);
  else fprintf(stderr, "p11emu: unknown option '%s' ignored\n", k);
}

static void config_parse(config *c, FILE *f) {
  config_defaults(c);
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    char *k = line + strspn(line, " \t");
    if (*k == '#' || *k == '\n' || !*k) continue;
    char *eq = strchr(k, '=');
    if (!eq) continue;
    *eq = 0;
    char *v = eq + 1;
    v[strcspn(v, "\r\n")] = 0;
    for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--) *e = 0;
    v += strspn(v, " \t");
    config_set(c, k, v);
  }
}

/* Re-reads the file when it changed; caller holds the lock (gate() checks without it first). */
static void config_refresh(void) {
  if (!cfg_path[0]) {
    const char *p = getenv("P11EMU_CONFIG");
    if (!p || !*p) {
      if (cfg_size == -1) config_defaults(&cfg), cfg_size = -2;
      return;
    }
    snprintf(cfg_path, sizeof cfg_path, "%s", p);
  }
  struct stat st;
  if (stat(cfg_path, &st) != 0) return;
  if (st.st_size == cfg_size && st.st_mtim.tv_sec == cfg_mtime.tv_sec && st.st_mtim.tv_nsec == cfg_mtime.tv_nsec) return;
  FILE *f = fopen(cfg_path, "r");
  if (!f) return;
  config next;
  config_parse(&next, f);
  fclose(f);
  cfg = next;
  cfg_size = st.st_size;
  cfg_mtime = st.st_mtim;
}

/* ---------------------------------------------------------------- sessions */

static session *session_of(CK_SESSION_HANDLE h) {
  session *s = &sessions[h & (SLOTS - 1)];
  return h && s->handle == h ? s : NULL;
}

/* Frees the slot; its generation stays, so the next session there gets a new handle. */
static void session_free(session *s) {
  unsigned gen = s->gen;
  free(s->aad);
  memset(s, 0, sizeof *s);
  s->gen = gen;
  open_sessions--;
}

/* Every open session dies (failover, token removal); the real module logs out with them. */
static void drop_all_sessions(const char *why) {
  CK_SLOT_ID done[16];
  int ndone = 0;
  for (int i = 0; i < SLOTS; i++) {
    if (!sessions[i].handle) continue;
    int seen = 0;
    for (int j = 0; j < ndone; j++) seen |= done[j] == sessions[i].slot;
    if (!seen && ndone < 16 && sessions[i].handle != 1) {
      done[ndone++] = sessions[i].slot;
      if (real) real->C_CloseAllSessions(sessions[i].slot);
    }
    session_free(&sessions[i]);
  }
  emu_log("event %s: all sessions closed", why);
}

static int token_absent(void) { return cfg.token_absent_until > now_ms(); }

/* ---------------------------------------------------------------- the common prelude */

/*
 * Runs before every forwarded call: reloads the configuration, applies commanded events,
 * sleeps for the emulated network latency and injects faults. `h` is the caller's session handle
 * (0 for slot calls); on success *real_h holds the real module's handle. Returns CKR_OK to go on.
 */
static CK_RV gate(int fn, CK_SESSION_HANDLE h, CK_SESSION_HANDLE *real_h) {
  /* stat() outside the lock: a thread preempted inside a syscall while holding the one lock
   * would make every other session wait (a lock convoy that caps throughput under load). */
  struct stat st;
  int changed = cfg_path[0] && stat(cfg_path, &st) == 0 &&
                (st.st_size != cfg_size || st.st_mtim.tv_sec != cfg_mtime.tv_sec || st.st_mtim.tv_nsec != cfg_mtime.tv_nsec);
  pthread_mutex_lock(&lock);
  if (changed || !cfg_path[0]) config_refresh();
  if (cfg.failover != seen_failover) {
    seen_failover = cfg.failover;
    drop_all_sessions("failover");
  }
  int absent = token_absent();
  if (absent && !token_was_absent) drop_all_sessions("token removed");
  token_was_absent = absent;
  double latency = cfg.latency_fn[fn] ? cfg.latency_ms + cfg.jitter_ms * uniform() : 0;
  int error = cfg.error_fn[fn] && cfg.error_rate > 0 && uniform() < cfg.error_rate;
  int hang = cfg.hang_fn[fn] && cfg.hang_until > now_ms();
  CK_RV rv = CKR_OK;
  if (real_h) {
    session *s = session_of(h);
    if (absent) rv = CKR_TOKEN_NOT_PRESENT;
    else if (!s) rv = CKR_SESSION_HANDLE_INVALID;
    else *real_h = s->real;
  }
  pthread_mutex_unlock(&lock);
  if (rv != CKR_OK) return rv;
  if (hang) {
    emu_log("fault hang %s", FNAME[fn]);
    /* Blocks the calling thread like a network call to a silent HSM, until the fault is lifted. */
    for (;;) {
      pthread_mutex_lock(&lock);
      config_refresh();
      long long until = cfg.hang_until;
      pthread_mutex_unlock(&lock);
      if (until <= now_ms()) break;
      sleep_ms(20);
    }
  }
  sleep_ms(latency);
  if (error) {
    emu_log("fault CKR_DEVICE_ERROR %s", FNAME[fn]);
    return CKR_DEVICE_ERROR;
  }
  return CKR_OK;
}

#define GATE_SLOT(fn)                                   \
  do {                                                  \
    CK_RV g_ = gate(F_##fn, 0, NULL);                   \
    if (g_ != CKR_OK) return g_;                        \
  } while (0)
#define GATE(fn)                                        \
  CK_SESSION_HANDLE rh = 0;                             \
  do {                                                  \
    CK_RV g_ = gate(F_##fn, hSession, &rh);             \
    if (g_ != CKR_OK) return g_;                        \
  } while (0)

/* ---------------------------------------------------------------- mechanisms */

static int is_hidden(CK_MECHANISM_TYPE m) {
  for (int i = 0; i < cfg.nhidden; i++)
    if (cfg.hidden[i] == m) return 1;
  for (int i = 0; i < cfg.nrename; i++)
    if (cfg.rename_real[i] == m) return 1; /* only visible under its other number */
  return 0;
}

/* The caller's mechanism number → the real module's, or CKR_MECHANISM_INVALID. */
static CK_RV real_mechanism(CK_MECHANISM_TYPE m, CK_MECHANISM_TYPE *out) {
  pthread_mutex_lock(&lock);
  CK_RV rv = CKR_OK;
  *out = m;
  if (cfg.vendor_gcm && m == cfg.vendor_gcm) *out = CKM_AES_GCM_STD;
  else if (is_hidden(m)) rv = CKR_MECHANISM_INVALID;
  else
    for (int i = 0; i < cfg.nrename; i++)
      if (cfg.rename_as[i] == m) *out = cfg.rename_real[i];
  pthread_mutex_unlock(&lock);
  return rv;
}

/* Copies the caller's mechanism with the real number; refuses what the emulated vendor lacks. */
static CK_RV map_mechanism(CK_MECHANISM_PTR in, CK_MECHANISM *out) {
  if (!in) return CKR_ARGUMENTS_BAD;
  *out = *in;
  CK_RV rv = real_mechanism(in->mechanism, &out->mechanism);
  if (rv != CKR_OK) return rv;
  if (cfg.oaep_sha1_only && in->mechanism == CKM_RSA_PKCS_OAEP && in->pParameter &&
      ((CK_RSA_PKCS_OAEP_PARAMS *)in->pParameter)->hashAlg != CKM_SHA_1)
    return CKR_MECHANISM_PARAM_INVALID;
  return CKR_OK;
}

/* ---------------------------------------------------------------- general and slot functions */

static CK_RV E_C_Initialize(CK_VOID_PTR a) {
  pthread_mutex_lock(&lock);
  cfg_path[0] = 0; /* the environment may name another file since the last C_Finalize */
  cfg_size = -1;
  config_refresh();
  pthread_mutex_unlock(&lock);
  return real->C_Initialize(a);
}

static CK_RV E_C_Finalize(CK_VOID_PTR r) {
  CK_RV rv = real->C_Finalize(r);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SLOTS; i++)
    if (sessions[i].handle) {
      session_free(&sessions[i]);
    }
  pthread_mutex_unlock(&lock);
  return rv;
}

static CK_RV E_C_GetInfo(CK_INFO_PTR p) {
  CK_RV rv = real->C_GetInfo(p);
  if (rv == CKR_OK) memcpy(p->manufacturerID, "p11kms HSM emulator             ", 32);
  return rv;
}

static CK_RV E_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  GATE_SLOT(C_GetSlotList);
  pthread_mutex_lock(&lock);
  int absent = token_absent();
  pthread_mutex_unlock(&lock);
  if (present && absent) {
    if (!count) return CKR_ARGUMENTS_BAD;
    *count = 0;
    return CKR_OK;
  }
  return real->C_GetSlotList(present, list, count);
}

static CK_RV E_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR p) {
  GATE_SLOT(C_GetSlotInfo);
  CK_RV rv = real->C_GetSlotInfo(slot, p);
  pthread_mutex_lock(&lock);
  if (rv == CKR_OK && token_absent()) p->flags &= ~CKF_TOKEN_PRESENT;
  pthread_mutex_unlock(&lock);
  return rv;
}

static CK_RV E_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR p) {
  GATE_SLOT(C_GetTokenInfo);
  pthread_mutex_lock(&lock);
  int absent = token_absent();
  CK_ULONG max = cfg.max_sessions;
  pthread_mutex_unlock(&lock);
  if (absent) return CKR_TOKEN_NOT_PRESENT;
  CK_RV rv = real->C_GetTokenInfo(slot, p);
  if (rv == CKR_OK && max) p->ulMaxSessionCount = p->ulMaxRwSessionCount = max;
  return rv;
}

static CK_RV E_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
  GATE_SLOT(C_GetMechanismList);
  if (!count) return CKR_ARGUMENTS_BAD;
  CK_ULONG n = 0;
  CK_RV rv = real->C_GetMechanismList(slot, NULL, &n);
  if (rv != CKR_OK) return rv;
  CK_MECHANISM_TYPE *all = calloc(n + 1, sizeof *all);
  if (!all) return CKR_HOST_MEMORY;
  rv = real->C_GetMechanismList(slot, all, &n);
  CK_ULONG out = 0;
  pthread_mutex_lock(&lock);
  int has_gcm = 0;
  for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
    CK_MECHANISM_TYPE m = all[i];
    has_gcm |= m == CKM_AES_GCM_STD;
    if (is_hidden(m)) {
      for (int j = 0; j < cfg.nrename; j++)
        if (cfg.rename_real[j] == m) m = cfg.rename_as[j], all[out++] = m;
      continue;
    }
    all[out++] = m;
  }
  if (has_gcm && cfg.vendor_gcm) all[out++] = cfg.vendor_gcm; /* n + 1 entries allocated */
  pthread_mutex_unlock(&lock);
  if (rv == CKR_OK) {
    if (list && *count < out) rv = CKR_BUFFER_TOO_SMALL;
    else if (list) memcpy(list, all, out * sizeof *all);
    *count = out;
  }
  free(all);
  return rv;
}

static CK_RV E_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR p) {
  GATE_SLOT(C_GetMechanismInfo);
  CK_MECHANISM_TYPE r;
  CK_RV rv = real_mechanism(type, &r);
  return rv != CKR_OK ? rv : real->C_GetMechanismInfo(slot, r, p);
}

static CK_RV E_C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label) {
  GATE_SLOT(C_InitToken);
  return real->C_InitToken(slot, pin, len, label);
}

static CK_RV E_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR r) {
  return real->C_WaitForSlotEvent(flags, slot, r);
}

/* ---------------------------------------------------------------- sessions and login */

static CK_RV E_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR ph) {
  GATE_SLOT(C_OpenSession);
  if (!ph) return CKR_ARGUMENTS_BAD;
  pthread_mutex_lock(&lock);
  CK_RV rv = CKR_OK;
  if (token_absent()) rv = CKR_TOKEN_NOT_PRESENT;
  else if (cfg.refuse_ro_sessions && !(flags & CKF_RW_SESSION)) rv = CKR_FUNCTION_NOT_SUPPORTED;
  else if (cfg.max_sessions && open_sessions >= cfg.max_sessions) rv = CKR_SESSION_COUNT;
  int idx = -1;
  for (int i = 1; rv == CKR_OK && i < SLOTS; i++)
    if (!sessions[i].handle) {
      idx = i;
      break;
    }
  if (rv == CKR_OK && idx < 0) rv = CKR_SESSION_COUNT;
  if (rv == CKR_OK) {
    sessions[idx].handle = 1; /* reserved while the real module opens its session */
    open_sessions++;
  }
  pthread_mutex_unlock(&lock);
  if (rv != CKR_OK) return rv;
  CK_SESSION_HANDLE r = 0;
  rv = real->C_OpenSession(slot, flags, app, notify, &r);
  pthread_mutex_lock(&lock);
  session *s = &sessions[idx];
  if (s->handle != 1) { /* a failover or removal dropped every session while this one opened */
    if (rv == CKR_OK) real->C_CloseSession(r);
    pthread_mutex_unlock(&lock);
    return CKR_SESSION_HANDLE_INVALID;
  }
  if (rv == CKR_OK) {
    s->gen++;
    s->handle = ((CK_SESSION_HANDLE)s->gen << 13) | (CK_SESSION_HANDLE)idx;
    s->real = r;
    s->slot = slot;
    *ph = s->handle;
  } else {
    session_free(s);
  }
  pthread_mutex_unlock(&lock);
  return rv;
}

static CK_RV E_C_CloseSession(CK_SESSION_HANDLE hSession) {
  GATE(C_CloseSession);
  CK_RV rv = real->C_CloseSession(rh);
  pthread_mutex_lock(&lock);
  session *s = session_of(hSession);
  if (s) {
    session_free(s);
  }
  pthread_mutex_unlock(&lock);
  return rv;
}

static CK_RV E_C_CloseAllSessions(CK_SLOT_ID slot) {
  GATE_SLOT(C_CloseAllSessions);
  CK_RV rv = real->C_CloseAllSessions(slot);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SLOTS; i++)
    if (sessions[i].handle && sessions[i].slot == slot) {
      session_free(&sessions[i]);
    }
  pthread_mutex_unlock(&lock);
  return rv;
}

/* Vendor PIN formats: the HSM sees only the password; a PIN without the vendor part is refused. */
static CK_RV E_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE who, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  GATE(C_Login);
  pthread_mutex_lock(&lock);
  size_t plen = strlen(cfg.pin_prefix);
  int ok = plen == 0 || (pin && len >= plen && memcmp(pin, cfg.pin_prefix, plen) == 0);
  pthread_mutex_unlock(&lock);
  if (!ok) return CKR_PIN_INCORRECT;
  return real->C_Login(rh, who, pin ? pin + plen : pin, len - plen);
}

#define FWD(fn, params, ...)       \
  static CK_RV E_##fn params {     \
    GATE(fn);                      \
    return real->fn(rh, __VA_ARGS__); \
  }
#define FWD0(fn)                                 \
  static CK_RV E_##fn(CK_SESSION_HANDLE hSession) { \
    GATE(fn);                                    \
    return real->fn(rh);                         \
  }

FWD(C_InitPIN, (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR p, CK_ULONG l), p, l)
FWD(C_SetPIN, (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR o, CK_ULONG ol, CK_UTF8CHAR_PTR n, CK_ULONG nl), o, ol, n, nl)
FWD(C_GetSessionInfo, (CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR p), p)
FWD(C_GetOperationState, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG_PTR l), p, l)
FWD(C_SetOperationState, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_OBJECT_HANDLE e, CK_OBJECT_HANDLE a), p, l, e, a)
FWD0(C_Logout)
FWD(C_CreateObject, (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), t, n, o)
FWD(C_CopyObject, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR no), o, t, n, no)
FWD(C_DestroyObject, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE o), o)
FWD(C_GetObjectSize, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE o, CK_ULONG_PTR l), o, l)
FWD(C_GetAttributeValue, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), o, t, n)
FWD(C_SetAttributeValue, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), o, t, n)
FWD(C_FindObjectsInit, (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR t, CK_ULONG n), t, n)
FWD(C_FindObjects, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n), o, m, n)
FWD0(C_FindObjectsFinal)
FWD(C_EncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_EncryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR o, CK_ULONG_PTR ol), o, ol)
FWD(C_DecryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_DecryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR o, CK_ULONG_PTR ol), o, ol)
FWD(C_Digest, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_DigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l), p, l)
FWD(C_DigestKey, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE k), k)
FWD(C_DigestFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR o, CK_ULONG_PTR ol), o, ol)
FWD(C_Sign, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_SignUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l), p, l)
FWD(C_SignFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR o, CK_ULONG_PTR ol), o, ol)
FWD(C_SignRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_Verify, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR s, CK_ULONG sl), p, l, s, sl)
FWD(C_VerifyUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l), p, l)
FWD(C_VerifyFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR s, CK_ULONG sl), s, sl)
FWD(C_VerifyRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR s, CK_ULONG sl, CK_BYTE_PTR o, CK_ULONG_PTR ol), s, sl, o, ol)
FWD(C_DigestEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_DecryptDigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_SignEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol), p, l, o, ol)
FWD(C_SeedRandom, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l), p, l)
FWD(C_GenerateRandom, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR p, CK_ULONG l), p, l)
FWD0(C_GetFunctionStatus)
FWD0(C_CancelFunction)

/* Initialisations with a mechanism: the number is translated, hidden ones are refused. */
#define FWD_MECH(fn)                                                                          \
  static CK_RV E_##fn(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {   \
    GATE(fn);                                                                                 \
    CK_MECHANISM rm;                                                                          \
    CK_RV rv = map_mechanism(m, &rm);                                                         \
    return rv != CKR_OK ? rv : real->fn(rh, &rm, k);                                          \
  }
FWD_MECH(C_SignInit)
FWD_MECH(C_SignRecoverInit)
FWD_MECH(C_VerifyInit)
FWD_MECH(C_VerifyRecoverInit)

static CK_RV E_C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m) {
  GATE(C_DigestInit);
  CK_MECHANISM rm;
  CK_RV rv = map_mechanism(m, &rm);
  return rv != CKR_OK ? rv : real->C_DigestInit(rh, &rm);
}

/* ---------------------------------------------------------------- key management */

static CK_RV E_C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) {
  GATE(C_GenerateKey);
  CK_MECHANISM rm;
  CK_RV rv = map_mechanism(m, &rm);
  if (rv != CKR_OK) return rv;
  if (rm.mechanism == CKM_AES_KEY_GEN) {
    pthread_mutex_lock(&lock);
    for (CK_ULONG i = 0; t && i < n && rv == CKR_OK; i++)
      for (int j = 0; j < cfg.nkeygen_reject; j++)
        if (t[i].type == cfg.keygen_reject[j]) rv = CKR_ATTRIBUTE_TYPE_INVALID;
    pthread_mutex_unlock(&lock);
    if (rv != CKR_OK) return rv;
  }
  return real->C_GenerateKey(rh, &rm, t, n, k);
}

/* Calls with a mechanism and more arguments: translated and refused like FWD_MECH. */
#define FWD_M(fn, params, ...)                                \
  static CK_RV E_##fn params {                                \
    GATE(fn);                                                 \
    CK_MECHANISM rm;                                          \
    CK_RV rv = map_mechanism(m, &rm);                         \
    return rv != CKR_OK ? rv : real->fn(rh, &rm, __VA_ARGS__); \
  }
FWD_M(C_GenerateKeyPair, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR st, CK_ULONG sn,
                          CK_OBJECT_HANDLE_PTR pk, CK_OBJECT_HANDLE_PTR sk), pt, pn, st, sn, pk, sk)
FWD_M(C_WrapKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k, CK_BYTE_PTR o, CK_ULONG_PTR ol), w, k, o, ol)
FWD_M(C_UnwrapKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE u, CK_BYTE_PTR w, CK_ULONG wl, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                    CK_OBJECT_HANDLE_PTR k), u, w, wl, t, n, k)
FWD_M(C_DeriveKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k), b, t, n, k)

/* AES-GCM: the vendor IV behaviours (one translation unit, so it shares the statics above). */
#include "p11emu-gcm.c"

/* ---------------------------------------------------------------- the function list */

static CK_RV E_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp);

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  pthread_mutex_lock(&lock);
  CK_RV rv = CKR_OK;
  if (!real) {
    config_refresh();
    real_lib = dlopen(cfg.module, RTLD_NOW | RTLD_LOCAL);
    CK_C_GetFunctionList get = real_lib ? (CK_C_GetFunctionList)dlsym(real_lib, "C_GetFunctionList") : NULL;
    if (!get || get(&real) != CKR_OK) {
      fprintf(stderr, "p11emu: cannot load real module '%s': %s\n", cfg.module, dlerror());
      real = NULL;
      rv = CKR_GENERAL_ERROR;
    } else {
      emu_list.version = real->version;
#define X(n) emu_list.n = E_##n;
      EMU_FUNCS
#undef X
    }
  }
  pthread_mutex_unlock(&lock);
  if (rv == CKR_OK) *pp = &emu_list;
  return rv;
}

static CK_RV E_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp) { return C_GetFunctionList(pp); }
