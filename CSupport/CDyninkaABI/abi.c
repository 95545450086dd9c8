// Layout checks: Swift on both sides of the boundary relies on these sizes.
#include "dyninka_abi.h"

_Static_assert(sizeof(dyninka_bytes) == 2 * sizeof(void *), "dyninka_bytes layout");
_Static_assert(sizeof(int32_t) == 4, "int32_t width");
_Static_assert(offsetof(dyninka_table, abi_version) == 0, "abi_version must come first");
