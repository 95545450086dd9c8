#include "dyninka_crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

struct dyn_app_key {
    EVP_MAC *mac;
    EVP_MAC_CTX *context;
};

dyn_app_key *dyn_app_key_new(const uint8_t *key, size_t length) {
    if (length < 16) return NULL;
    dyn_app_key *app = calloc(1, sizeof *app);
    if (!app) return NULL;
    app->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    app->context = app->mac ? EVP_MAC_CTX_new(app->mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_construct_end()};
    if (!app->context || EVP_MAC_init(app->context, key, length, params) != 1) {
        dyn_app_key_free(app);
        return NULL;
    }
    return app;
}

void dyn_app_key_free(dyn_app_key *app) {
    if (!app) return;
    EVP_MAC_CTX_free(app->context);
    EVP_MAC_free(app->mac);
    free(app);
}

/// Writes `value` in decimal at `out` (room for 20 digits); returns the digits written.
static size_t decimal(uint64_t value, char *out) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    for (size_t i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    return n;
}

/// The message is composed in one buffer and given to the MAC in one update: a marker byte for
/// each part (present or absent), its length, its bytes. Lengths make the encoding unambiguous
/// whatever the parts contain.
static size_t put(char *message, size_t at, dyn_part part) {
    if (!part.data) {
        message[at++] = '-';
        message[at++] = ':';
        return at;
    }
    message[at++] = '+';
    at += decimal(part.length, message + at);
    message[at++] = ':';
    memcpy(message + at, part.data, part.length);
    return at + part.length;
}

static int digest(dyn_app_key *app, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline, uint64_t expiry,
                  unsigned char out[32]) {
    static const char stamp[] = "dyninka-auth-v1 ";
    size_t size = sizeof stamp + 21 + 4 * 24 + service.length + route.length + arguments.length + deadline.length;
    char small[1024];
    char *message = size <= sizeof small ? small : malloc(size);
    if (!message) return 0;
    size_t at = sizeof stamp - 1;
    memcpy(message, stamp, at);
    at += decimal(expiry, message + at);
    message[at++] = ' ';
    at = put(message, at, service);
    at = put(message, at, route);
    at = put(message, at, arguments);
    at = put(message, at, deadline);
    size_t written = 0;
    // The key set at creation is reused (a NULL key keeps it).
    int ok = EVP_MAC_init(app->context, NULL, 0, NULL) == 1 && EVP_MAC_update(app->context, (const unsigned char *)message, at) == 1
             && EVP_MAC_final(app->context, out, &written, 32) == 1 && written == 32;
    if (message != small) free(message);
    return ok;
}

size_t dyn_auth_value(dyn_app_key *app, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline,
                      uint64_t expiry_ms, char *out) {
    unsigned char mac[32];
    if (!app || !digest(app, service, route, arguments, deadline, expiry_ms, mac)) return 0;
    size_t n = 3;
    memcpy(out, "v1 ", 3);
    n += decimal(expiry_ms, out + n);
    out[n++] = ' ';
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[n + 2 * i] = hex[mac[i] >> 4];
        out[n + 2 * i + 1] = hex[mac[i] & 15];
    }
    return n + 64;
}

int dyn_auth_check(dyn_app_key *app, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline,
                   const char *value, size_t length, uint64_t *expiry_ms) {
    // "v1 " EXPIRY " " HEX64, nothing else.
    if (!app || length < 3 + 1 + 1 + 64 || length > DYN_AUTH_VALUE_MAX || memcmp(value, "v1 ", 3) != 0) return 0;
    uint64_t expiry = 0;
    size_t at = 3;
    while (at < length && value[at] >= '0' && value[at] <= '9' && at < 3 + 20) expiry = expiry * 10 + (uint64_t)(value[at++] - '0');
    if (at == 3 || at >= length || value[at] != ' ' || length - at - 1 != 64) return 0;
    *expiry_ms = expiry;
    char expected[DYN_AUTH_VALUE_MAX];
    size_t n = dyn_auth_value(app, service, route, arguments, deadline, expiry, expected);
    if (n != length) return 0;
    return CRYPTO_memcmp(expected, value, length) == 0;
}

int dyn_random_bytes(uint8_t *buffer, size_t length) { return RAND_bytes(buffer, (int)length) == 1; }

int dyn_sha256(const uint8_t *data, size_t length, uint8_t out[32]) {
    unsigned int written = 0;
    return EVP_Digest(data, length, out, &written, EVP_sha256(), NULL) == 1 && written == 32;
}
