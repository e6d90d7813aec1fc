/*
 * AES-GCM as each vendor does it (README.md, "AES-GCM modes"). Included by p11emu.c.
 *
 * The real module (SoftHSM2) only knows caller-supplied IVs, so for the token-generated modes the
 * emulator draws the IV from the real module's C_GenerateRandom at C_EncryptInit, initialises the
 * real operation with it, and hands it back the way the vendor does: written into the caller's
 * pIv at C_Encrypt time (zero-buffer), appended after the tag (appended) or put in front of the
 * ciphertext (prepended). Each generated IV is logged to log_file so tests can check that the
 * ciphertext carries exactly the IV the "HSM" used.
 */

enum { OP_NONE, OP_WRITE_BACK, OP_APPEND, OP_PREPEND_ENC, OP_PREPEND_DEC, OP_GCM_DEC };

/* The GCM behaviour of a mechanism number as the caller names it, or -1 for other mechanisms. */
static int gcm_behaviour(CK_MECHANISM_TYPE m) {
  if (cfg.vendor_gcm && m == cfg.vendor_gcm) return cfg.vendor_gcm_mode;
  if (m == CKM_AES_GCM_STD) return cfg.gcm_mode;
  return -1;
}

static void set_op(CK_SESSION_HANDLE h, int op, const CK_BYTE *iv, CK_ULONG iv_len, CK_ULONG tag_bytes, CK_BYTE_PTR write_iv) {
  pthread_mutex_lock(&lock);
  session *s = session_of(h);
  if (s) {
    s->op = op;
    if (iv) memcpy(s->iv, iv, iv_len);
    s->iv_len = iv_len;
    s->tag_bytes = tag_bytes;
    s->write_iv = write_iv;
  }
  pthread_mutex_unlock(&lock);
}

/* A copy of the session's GCM state (op OP_NONE when there is none). */
static session get_op(CK_SESSION_HANDLE h) {
  session copy;
  memset(&copy, 0, sizeof copy);
  pthread_mutex_lock(&lock);
  session *s = session_of(h);
  if (s) copy = *s;
  pthread_mutex_unlock(&lock);
  return copy;
}

static CK_RV gcm_params(CK_MECHANISM_PTR m, int strict, CK_GCM_PARAMS *out) {
  if (!m->pParameter || m->ulParameterLen != sizeof(CK_GCM_PARAMS)) return CKR_MECHANISM_PARAM_INVALID;
  *out = *(CK_GCM_PARAMS *)m->pParameter;
  /* Strict modules (NSS, Luna, kmsp11) refuse an ulIvBits that does not match ulIvLen. */
  if (strict && out->ulIvBits != 8 * out->ulIvLen) return CKR_MECHANISM_PARAM_INVALID;
  if (out->ulTagBits < 96 || out->ulTagBits > 128 || out->ulTagBits % 8) return CKR_MECHANISM_PARAM_INVALID;
  return CKR_OK;
}

static CK_RV E_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
  GATE(C_EncryptInit);
  CK_MECHANISM rm;
  CK_RV rv = map_mechanism(m, &rm);
  if (rv != CKR_OK) return rv;
  pthread_mutex_lock(&lock);
  int mode = gcm_behaviour(m->mechanism), strict = cfg.strict_iv_bits, from_bits = cfg.appended_iv_from_bits;
  CK_ULONG appended = cfg.appended_iv_bytes;
  pthread_mutex_unlock(&lock);
  set_op(hSession, OP_NONE, NULL, 0, 0, NULL);
  if (mode < 0) return real->C_EncryptInit(rh, &rm, key);
  CK_GCM_PARAMS p;
  CK_ULONG iv_len = GCM_IV_GENERATED;
  int op = OP_NONE;
  switch (mode) {
  case GCM_CALLER:
    if ((rv = gcm_params(m, strict, &p)) != CKR_OK) return rv;
    return real->C_EncryptInit(rh, &rm, key);
  case GCM_ZERO_BUFFER: /* CloudHSM SDK 5, kmsp11: pIv must be a zero-filled 12-byte buffer */
    if ((rv = gcm_params(m, strict, &p)) != CKR_OK) return rv;
    if (!p.pIv || p.ulIvLen != GCM_IV_GENERATED) return CKR_MECHANISM_PARAM_INVALID;
    for (CK_ULONG i = 0; i < p.ulIvLen; i++)
      if (p.pIv[i]) return CKR_MECHANISM_PARAM_INVALID;
    op = OP_WRITE_BACK;
    break;
  case GCM_APPENDED: /* Luna FIPS mode: any caller IV is replaced; ulIvLen 0 is the documented use */
    if ((rv = gcm_params(m, 0, &p)) != CKR_OK) return rv;
    if (strict && p.ulIvLen && p.ulIvBits != 8 * p.ulIvLen) return CKR_MECHANISM_PARAM_INVALID;
    iv_len = appended;
    if (from_bits && p.ulIvLen == 0 && p.ulIvBits >= 96 && p.ulIvBits <= 128 && p.ulIvBits % 8 == 0) iv_len = p.ulIvBits / 8;
    op = OP_APPEND;
    break;
  case GCM_PREPENDED: /* CKM_CLOUDHSM_AES_GCM: pIv NULL (ulIvLen 0), IV in front of the ciphertext */
    if ((rv = gcm_params(m, 0, &p)) != CKR_OK) return rv;
    if (p.ulIvLen || (strict && p.ulIvBits)) return CKR_MECHANISM_PARAM_INVALID; /* pIv is NULL or empty */
    op = OP_PREPEND_ENC;
    break;
  }
  CK_BYTE iv[16];
  if ((rv = real->C_GenerateRandom(rh, iv, iv_len)) != CKR_OK) return rv;
  CK_GCM_PARAMS q = p;
  q.pIv = iv;
  q.ulIvLen = iv_len;
  q.ulIvBits = 8 * iv_len;
  rm.mechanism = CKM_AES_GCM_STD;
  rm.pParameter = &q;
  rm.ulParameterLen = sizeof q;
  rv = real->C_EncryptInit(rh, &rm, key);
  if (rv != CKR_OK) return rv;
  set_op(hSession, op, iv, iv_len, p.ulTagBits / 8, p.pIv);
  char h[33];
  hex(h, iv, iv_len);
  pthread_mutex_lock(&lock);
  emu_log("gcm-iv %s %s", op == OP_WRITE_BACK ? "zero-buffer" : op == OP_APPEND ? "appended" : "prepended", h);
  pthread_mutex_unlock(&lock);
  return CKR_OK;
}

/* Output = what the real module writes, with the vendor's extra IV bytes around it. */
static CK_RV E_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  GATE(C_Encrypt);
  session s = get_op(hSession);
  if (s.op == OP_NONE) return real->C_Encrypt(rh, data, len, out, out_len);
  if (!out_len) return CKR_ARGUMENTS_BAD;
  CK_RV rv;
  if (s.op == OP_WRITE_BACK) {
    rv = real->C_Encrypt(rh, data, len, out, out_len);
    if (rv == CKR_OK && out) memcpy(s.write_iv, s.iv, s.iv_len); /* the caller's pIv, at C_Encrypt time */
  } else {
    CK_ULONG need = len + s.tag_bytes + s.iv_len;
    if (!out) {
      *out_len = need;
      return CKR_OK;
    }
    if (*out_len < need) {
      *out_len = need;
      return CKR_BUFFER_TOO_SMALL;
    }
    CK_ULONG n = *out_len - s.iv_len;
    int front = s.op == OP_PREPEND_ENC;
    rv = real->C_Encrypt(rh, data, len, front ? out + s.iv_len : out, &n);
    if (rv == CKR_OK) {
      memcpy(front ? out : out + n, s.iv, s.iv_len);
      *out_len = n + s.iv_len;
    }
  }
  if (!(rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && !out))) set_op(hSession, OP_NONE, NULL, 0, 0, NULL);
  return rv;
}

static CK_RV E_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
  GATE(C_DecryptInit);
  CK_MECHANISM rm;
  CK_RV rv = map_mechanism(m, &rm);
  if (rv != CKR_OK) return rv;
  pthread_mutex_lock(&lock);
  int mode = gcm_behaviour(m->mechanism), strict = cfg.strict_iv_bits;
  pthread_mutex_unlock(&lock);
  set_op(hSession, OP_NONE, NULL, 0, 0, NULL);
  if (mode < 0) return real->C_DecryptInit(rh, &rm, key);
  CK_GCM_PARAMS p;
  if (mode != GCM_PREPENDED) {
    /* Decryption takes the IV the encryption produced, in pIv (Luna: "AAD and IV (for decryption only)"). */
    if ((rv = gcm_params(m, strict, &p)) != CKR_OK) return rv;
    rv = real->C_DecryptInit(rh, &rm, key);
    if (rv == CKR_OK) set_op(hSession, OP_GCM_DEC, NULL, 0, p.ulTagBits / 8, NULL);
    return rv;
  }
  /* Prepended: the IV arrives with the data, so the real C_DecryptInit waits for C_Decrypt. */
  if ((rv = gcm_params(m, 0, &p)) != CKR_OK) return rv;
  if (p.ulIvLen || (strict && p.ulIvBits)) return CKR_MECHANISM_PARAM_INVALID; /* pIv is NULL or empty */
  CK_BYTE *aad = p.ulAADLen ? malloc(p.ulAADLen) : NULL;
  if (p.ulAADLen && !aad) return CKR_HOST_MEMORY;
  if (aad) memcpy(aad, p.pAAD, p.ulAADLen);
  pthread_mutex_lock(&lock);
  session *s = session_of(hSession);
  if (s) {
    free(s->aad);
    s->aad = aad, s->aad_len = p.ulAADLen, s->key = key, s->op = OP_PREPEND_DEC, s->tag_bytes = p.ulTagBits / 8;
    aad = NULL;
  }
  pthread_mutex_unlock(&lock);
  free(aad);
  return s ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

static CK_RV E_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  GATE(C_Decrypt);
  pthread_mutex_lock(&lock);
  session *live = session_of(hSession);
  session s = live ? *live : (session){0};
  if (live) live->aad = NULL; /* this call owns the AAD copy now */
  CK_RV failure = cfg.decrypt_failure_rv;
  pthread_mutex_unlock(&lock);
  CK_RV rv;
  if (s.op == OP_PREPEND_DEC) {
    if (!out_len) rv = CKR_ARGUMENTS_BAD;
    else if (len < GCM_IV_GENERATED + s.tag_bytes) rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
    else if (!out || *out_len < len - GCM_IV_GENERATED - s.tag_bytes) {
      rv = out ? CKR_BUFFER_TOO_SMALL : CKR_OK;
      *out_len = len - GCM_IV_GENERATED - s.tag_bytes;
      pthread_mutex_lock(&lock);
      if ((live = session_of(hSession)) && !live->aad) live->aad = s.aad, s.aad = NULL; /* still active */
      pthread_mutex_unlock(&lock);
      return rv;
    } else {
      CK_GCM_PARAMS q = {data, GCM_IV_GENERATED, 8 * GCM_IV_GENERATED, s.aad, s.aad_len, 8 * s.tag_bytes};
      CK_MECHANISM mech = {CKM_AES_GCM_STD, &q, sizeof q};
      rv = real->C_DecryptInit(rh, &mech, s.key);
      if (rv == CKR_OK) rv = real->C_Decrypt(rh, data + GCM_IV_GENERATED, len - GCM_IV_GENERATED, out, out_len);
    }
    free(s.aad);
  } else {
    rv = real->C_Decrypt(rh, data, len, out, out_len);
    if (rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && !out)) return rv;
  }
  set_op(hSession, OP_NONE, NULL, 0, 0, NULL);
  /* Vendors report a failed tag check with different codes (SoftHSM 2.6.1: CKR_GENERAL_ERROR). */
  if (failure && s.op != OP_NONE && (rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID)) rv = failure;
  return rv;
}
