#ifndef TETHER_CEXPAT_SHIM_H
#define TETHER_CEXPAT_SHIM_H
/* Debian's libexpat is built with XML_DTD; the header hides the billion-laughs setters without it. */
#ifndef XML_DTD
#define XML_DTD 1
#endif
#include <expat.h>

/* Expat >= 2.6 defers reparsing of split tokens, which would let a stanza sit unreported on an
   interactive stream. Tether caps stanza size itself, so it turns deferral off where it exists. */
static inline void tether_disable_reparse_deferral(XML_Parser parser) {
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
    XML_SetReparseDeferralEnabled(parser, XML_FALSE);
#else
    (void)parser;
#endif
}
#endif
