// The app key's one use: HMAC-SHA256 over a request's route, arguments and deadline, so that a
// host can tell a hop of its own app from a client. OpenSSL's libcrypto does the cryptography
// (EVP_MAC); this file only composes the message and the header value, the same way for the
// host that signs and checks and for the CLI that signs (`dyninka invoke --key-file`).
#ifndef DYNINKA_CRYPTO_H
#define DYNINKA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/// A keyed HMAC-SHA256 context, reused for every message (one thread at a time).
typedef struct dyn_app_key dyn_app_key;

/// A context for `key` (`length` bytes, at least 16); NULL when libcrypto cannot make one.
dyn_app_key *dyn_app_key_new(const uint8_t *key, size_t length);
void dyn_app_key_free(dyn_app_key *key);

/// A part of the signed message; `data` NULL means "absent" (not the same as empty).
typedef struct {
    const uint8_t *data;
    size_t length;
} dyn_part;

/// Length of the header value `dyn_auth_value` writes: "v1 EXPIRY HEX64" with EXPIRY up to 20 digits.
#define DYN_AUTH_VALUE_MAX 96

/// Writes the `Dyninka-Auth` value for a request to `service` carrying `route`, `arguments` and
/// `deadline` (each absent or present, as sent), valid until `expiry_ms` (Unix milliseconds),
/// into `out` (DYN_AUTH_VALUE_MAX bytes); returns its length, or 0 when libcrypto failed.
size_t dyn_auth_value(dyn_app_key *key, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline,
                      uint64_t expiry_ms, char *out);

/// Checks a `Dyninka-Auth` value against the request: 1 when it was made with this key for these
/// parts, 0 when not (compared in constant time); `*expiry_ms` receives the expiry it names.
int dyn_auth_check(dyn_app_key *key, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline,
                   const char *value, size_t value_length, uint64_t *expiry_ms);

/// Fills `buffer` with `length` bytes from libcrypto's random source (a new app key); 1 on success.
int dyn_random_bytes(uint8_t *buffer, size_t length);

/// The SHA-256 of `length` bytes at `data` into `out` (a container image's content digests); 1 on success.
int dyn_sha256(const uint8_t *data, size_t length, uint8_t out[32]);

#endif
