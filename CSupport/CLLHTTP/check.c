// Fails the build with an actionable message when scripts/bootstrap has not placed llhttp.
#include "CLLHTTP.h"
