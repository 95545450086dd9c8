#include "dyninka_crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
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

/// One part of the message: a marker byte (present or absent), the length, the bytes. Lengths
/// make the encoding unambiguous whatever the parts contain.
static int absorb(EVP_MAC_CTX *context, dyn_part part) {
    char prefix[24];
    int n = part.data ? snprintf(prefix, sizeof prefix, "+%zu:", part.length) : snprintf(prefix, sizeof prefix, "-:");
    if (EVP_MAC_update(context, (const unsigned char *)prefix, (size_t)n) != 1) return 0;
    return part.data && part.length > 0 ? EVP_MAC_update(context, part.data, part.length) == 1 : 1;
}

static int digest(dyn_app_key *app, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline, uint64_t expiry,
                  unsigned char out[32]) {
    char stamp[32];
    int n = snprintf(stamp, sizeof stamp, "dyninka-auth-v1 %llu ", (unsigned long long)expiry);
    size_t written = 0;
    // The key set at creation is reused (a NULL key keeps it).
    if (EVP_MAC_init(app->context, NULL, 0, NULL) != 1) return 0;
    if (EVP_MAC_update(app->context, (const unsigned char *)stamp, (size_t)n) != 1) return 0;
    if (!absorb(app->context, service) || !absorb(app->context, route) || !absorb(app->context, arguments) ||
        !absorb(app->context, deadline))
        return 0;
    return EVP_MAC_final(app->context, out, &written, 32) == 1 && written == 32;
}

size_t dyn_auth_value(dyn_app_key *app, dyn_part service, dyn_part route, dyn_part arguments, dyn_part deadline,
                      uint64_t expiry_ms, char *out) {
    unsigned char mac[32];
    if (!app || !digest(app, service, route, arguments, deadline, expiry_ms, mac)) return 0;
    int n = snprintf(out, DYN_AUTH_VALUE_MAX, "v1 %llu ", (unsigned long long)expiry_ms);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[n + 2 * i] = hex[mac[i] >> 4];
        out[n + 2 * i + 1] = hex[mac[i] & 15];
    }
    return (size_t)n + 64;
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
