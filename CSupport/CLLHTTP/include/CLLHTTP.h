// Umbrella header of the CLLHTTP module. llhttp.h itself is placed here by scripts/bootstrap
// (llhttp 9.3.0 from the PyPI sdist, sha256-pinned); it is git-ignored and never committed.
#ifndef DYNINKA_CLLHTTP_H
#define DYNINKA_CLLHTTP_H

#if __has_include("llhttp.h")
#include "llhttp.h"
#else
#error "llhttp sources are missing: run scripts/bootstrap (it fetches llhttp 9.3.0 into CSupport/CLLHTTP)"
#endif

#endif
