// The compiled service table: the only contract between an app library and dyninka-host.
//
// An app library exports one C symbol, `dyninka_service_table`, returning a pointer to a
// `dyninka_table` that lives as long as the library is loaded. Everything that crosses this
// boundary is C: strings, byte slices and function pointers. No Swift type is shared.
//
// Memory: each side frees what it allocated.
//  - The host owns the input and argument bytes of a call; they stay valid until the library
//    calls `complete` for that call, and the library must not touch them afterwards.
//  - The library owns the bytes it passes to `complete`; the host hands them back with the
//    table's `free_bytes` once it has written them (possibly much later, on the host's loop).
//
// Threads: `entry` is called on the host's loop thread. A synchronous service completes before
// `entry` returns; an asynchronous one may complete later from any thread, exactly once.
//
// The host's loop (version 2): before the first entry, the host lends the library its event
// loop through `attach_host`. The library then runs async services as tasks on the loop thread
// (jobs queued from other threads are run when the host calls `run_jobs` after `wake`), and its
// HTTP fetches go through the host's non-blocking `exchange`. A library may ignore the host and
// complete from its own threads, as in version 1.
//
// State that can move (version 3): a service that owns @Placed state exports `snapshot` and
// `restore`, and `state_hash` says whether two builds declare that state alike. The host takes a
// snapshot only when no call of the service is running, and restores before the first call.
//
// Typed values between fused stages (version 4): when the next stage of a route runs in the same
// process, the host sets `want_value` and the library completes through `complete_value` with the
// output as an opaque value (a Swift box), which the host passes to the next stage's entry as
// `input_value` without encoding or decoding it. The host never looks inside a value; it passes
// it on once or releases it with the table's `release_value`.
#ifndef DYNINKA_ABI_H
#define DYNINKA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bumped on every incompatible change of the structures below.
#define DYNINKA_ABI_VERSION 4u

/// Name of the symbol an app library exports (type: dyninka_table_fn).
#define DYNINKA_TABLE_SYMBOL "dyninka_service_table"

/// How a call ended.
typedef enum dyninka_status {
    /// The function returned a value; the bytes are its JSON encoding.
    DYNINKA_STATUS_OK = 0,
    /// The function returned nil: the item is dropped (HTTP 204). No bytes.
    DYNINKA_STATUS_NIL = 1,
    /// The function threw; the bytes are a UTF-8 message.
    DYNINKA_STATUS_FUNCTION_ERROR = 2,
    /// The input or an argument did not decode; the bytes are a UTF-8 message.
    DYNINKA_STATUS_BAD_INPUT = 3,
} dyninka_status;

/// A borrowed run of bytes.
typedef struct dyninka_bytes {
    const uint8_t *data;
    size_t length;
} dyninka_bytes;

/// Called exactly once per call. `data` belongs to the library (release it with free_bytes).
typedef void (*dyninka_complete_fn)(void *context, int32_t status, uint8_t *data, size_t length);

/// Called instead of `complete` when the call asked for a value and the function returned one
/// (version 4). `value` belongs to the host from then on: it passes it to one call as
/// `input_value` or releases it with the table's `release_value`.
typedef void (*dyninka_complete_value_fn)(void *context, void *value);

/// One invocation of a service.
typedef struct dyninka_call {
    /// JSON of the implicit input (the receiver); length 0 when the service has none, or when
    /// `input_value` carries it.
    dyninka_bytes input;
    /// JSON of each explicit argument, in declaration order.
    const dyninka_bytes *arguments;
    size_t argument_count;
    /// Opaque to the library; passed back to `complete`.
    void *context;
    dyninka_complete_fn complete;
    /// The implicit input as the value an earlier stage of this process returned (version 4),
    /// or NULL. The library takes it over with the call (and releases it).
    void *input_value;
    /// Non-zero: the next stage runs in this process, so a returned value completes through
    /// `complete_value`, not encoded. Nil, errors and bad input still complete through `complete`.
    int32_t want_value;
    dyninka_complete_value_fn complete_value;
} dyninka_call;

typedef void (*dyninka_entry_fn)(const dyninka_call *call);

/// An explicit parameter of a service.
typedef struct dyninka_parameter {
    /// Argument label as written at the call site ("_" when unlabeled).
    const char *label;
    /// Swift type name; a trailing '?' marks an Optional.
    const char *type;
    /// The argument expression from `main` in route syntax (for example "weather()" or "30"),
    /// or NULL when main gives none.
    const char *default_argument;
} dyninka_parameter;

/// One service of the app.
typedef struct dyninka_service {
    const char *name;
    /// Type of the implicit input (the extended type), or "" for a global function.
    const char *input_type;
    /// Type of the output, without the Optional mark.
    const char *output_type;
    /// Non-zero when the function returns an Optional (nil drops the item).
    int32_t output_optional;
    int32_t is_async;
    int32_t is_throwing;
    const dyninka_parameter *parameters;
    size_t parameter_count;
    /// Comma-separated names of the @Placed variables this service owns ("" for none).
    const char *placed_state;
    /// Placement constraint for deployment ("" for none), for example "node=edge-1".
    const char *placement;
    /// What follows this service in main's chain, in route syntax ("" when it ends the chain).
    const char *default_route;
    dyninka_entry_fn entry;
    /// Hash of the declarations of its @Placed state (names, types, initial values); "" for none.
    /// A snapshot restores only into a build whose hash is the same.
    const char *state_hash;
    /// Writes the current values of its @Placed state as one JSON object into `*data` (released
    /// with free_bytes). Returns DYNINKA_STATUS_OK, or DYNINKA_STATUS_FUNCTION_ERROR with a UTF-8
    /// message in `*data` (a value that cannot be encoded). NULL for a service without state.
    int32_t (*snapshot)(uint8_t **data, size_t *length);
    /// Sets its @Placed state from a snapshot's JSON, every value checked against its type.
    /// Returns DYNINKA_STATUS_OK, or DYNINKA_STATUS_BAD_INPUT with a UTF-8 message in `*message`
    /// (released with free_bytes), leaving the state as it was. NULL for a service without state.
    int32_t (*restore)(const uint8_t *data, size_t length, uint8_t **message, size_t *message_length);
} dyninka_service;

/// How an exchange ended: `status` is the HTTP status (> 0) and the bytes are the response body;
/// or `status` is -1 and the bytes are a UTF-8 message saying what failed. The bytes belong to
/// the host and are valid only during the call. Called once, on the loop thread.
typedef void (*dyninka_exchange_done_fn)(void *context, int32_t status, const uint8_t *data, size_t length);

/// What the host lends an app library (ABI 2). Lives as long as the library is loaded.
typedef struct dyninka_host {
    /// Passed back to `wake` and `exchange`.
    void *context;
    /// Asks the host to call the table's `run_jobs` soon on its loop thread. Safe from any thread;
    /// called on the loop thread, the host runs the jobs once it has handled the current events.
    void (*wake)(void *context);
    /// Sends `request` (a complete HTTP/1.1 request, head and body) to `host`:`port` on the loop,
    /// reusing a kept-alive connection to that origin when there is one, and calls `done` with the
    /// response. Loop thread only. `request` must stay valid until `done` is called (a request on
    /// a kept-alive connection the server had closed meanwhile is sent again, once, on a new one).
    void (*exchange)(void *context, const char *host, int32_t port, const uint8_t *request, size_t length,
                     uint32_t timeout_ms, void *exchange_context, dyninka_exchange_done_fn done);
} dyninka_host;

/// The table an app library exports.
typedef struct dyninka_table {
    uint32_t abi_version;
    /// sizeof(dyninka_table) as the library saw it; guards against mismatched headers.
    uint32_t table_size;
    const char *app_name;
    /// The service main's chain starts from (where a client posts to run the default dataflow).
    const char *entry_service;
    const dyninka_service *services;
    size_t service_count;
    /// Releases bytes the library passed to a dyninka_complete_fn.
    void (*free_bytes)(uint8_t *data);
    /// Called once on the loop thread before any entry. The pointer stays valid for the library's life.
    void (*attach_host)(const dyninka_host *host);
    /// Runs what the library queued for the loop thread; the host calls it on its loop after `wake`.
    void (*run_jobs)(void);
    /// Releases a value the library passed to a dyninka_complete_value_fn (version 4).
    void (*release_value)(void *value);
} dyninka_table;

typedef const dyninka_table *(*dyninka_table_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
