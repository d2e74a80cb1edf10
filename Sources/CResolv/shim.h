#ifndef TETHER_CRESOLV_SHIM_H
#define TETHER_CRESOLV_SHIM_H
/* glibc's libresolv for Swift.
 *
 * resolv.h spells res_ninit/res_nquery/res_nclose/dn_expand as macros naming __res_* symbols, and
 * arpa/nameser.h reads ns_msg/ns_rr through accessor macros: Swift imports neither, so these
 * static inline wrappers are the whole surface Tether uses.
 *
 * Thread safety: the res_n* functions are safe only on a private `struct __res_state`. Tether
 * allocates one per lookup (zeroed, on the heap: the struct is ~570 bytes and must not move while
 * glibc holds pointers into it), initialises it, queries, closes and frees it. */
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- resolver state ---- */

/* A zeroed resolver state, or NULL when out of memory. Release with tether_res_state_free. */
static inline res_state tether_res_state_allocate(void) {
    return (res_state)calloc(1, sizeof(struct __res_state));
}

static inline void tether_res_state_free(res_state state) {
    free(state);
}

/* Loads /etc/resolv.conf into `state`. Returns 0 on success. On failure the state holds nothing
   to release (a partial initialisation is closed here), so callers only free it. */
static inline int tether_res_ninit(res_state state) {
    int result = res_ninit(state);
    if (result != 0) res_nclose(state);
    return result;
}

/* Releases sockets and memory that res_ninit/res_nquery attached to `state` (not the state). */
static inline void tether_res_nclose(res_state state) {
    res_nclose(state);
}

/* Per-try timeout in seconds (glibc doubles it per retry round) and number of rounds. */
static inline void tether_res_set_timeout(res_state state, int timeout_seconds, int attempts) {
    state->retrans = timeout_seconds < 1 ? 1 : timeout_seconds;
    state->retry = attempts < 1 ? 1 : attempts;
}

/* Makes `state` ask only the IPv4 nameserver `address`:`port` instead of resolv.conf's list.
   Returns 0, or -1 when `address` is not a dotted IPv4 address. glibc's res_send notices the changed
   list and copies entry 0 over its private (possibly IPv6) copy, so no resolv.conf server is asked. */
static inline int tether_res_set_nameserver_ipv4(res_state state, const char *address, uint16_t port) {
    struct sockaddr_in nameserver;
    memset(&nameserver, 0, sizeof(nameserver));
    nameserver.sin_family = AF_INET;
    nameserver.sin_port = htons(port);
    if (inet_pton(AF_INET, address, &nameserver.sin_addr) != 1) return -1;
    state->nsaddr_list[0] = nameserver;
    state->nscount = 1;
    return 0;
}

/* One query (no search list, no ndots games). Returns the answer length or -1; on -1,
   tether_res_h_errno tells why. NB: glibc may return more than `answer_capacity` when the answer
   was truncated to fit; callers must clamp. */
static inline int tether_res_nquery(res_state state, const char *name, int rr_class, int rr_type,
                                    unsigned char *answer, int answer_capacity) {
    return res_nquery(state, name, rr_class, rr_type, answer, answer_capacity);
}

/* The h_errno of the last query on `state`: HOST_NOT_FOUND (NXDOMAIN), NO_DATA (NOERROR, no answer
   records), TRY_AGAIN (SERVFAIL, REFUSED, NOTIMP after all retries, or no reply in time),
   NO_RECOVERY (FORMERR, or the query could not be built), NETDB_INTERNAL (see errno). */
static inline int tether_res_h_errno(res_state state) {
    return state->res_h_errno;
}

/* ---- answer parsing ---- */

/* Number of records in `section` of a message parsed with ns_initparse. */
static inline int tether_ns_msg_count(const ns_msg *message, ns_sect section) {
    return ns_msg_count(*message, section);
}

static inline const unsigned char *tether_ns_msg_base(const ns_msg *message) {
    return ns_msg_base(*message);
}

static inline const unsigned char *tether_ns_msg_end(const ns_msg *message) {
    return ns_msg_end(*message);
}

static inline int tether_ns_rr_type(const ns_rr *record) { return ns_rr_type(*record); }
static inline int tether_ns_rr_class(const ns_rr *record) { return ns_rr_class(*record); }
static inline int tether_ns_rr_rdlen(const ns_rr *record) { return ns_rr_rdlen(*record); }
static inline const unsigned char *tether_ns_rr_rdata(const ns_rr *record) { return ns_rr_rdata(*record); }

/* Expands the (possibly compressed) domain name at `source`, which lies inside [message, end), into
   `destination` in presentation form without a trailing dot (the root is "."). Returns the number
   of bytes the name occupies at `source`, or -1 if it is malformed, loops, or runs past `end`. */
static inline int tether_dn_expand(const unsigned char *message, const unsigned char *end,
                                   const unsigned char *source, char *destination, int destination_capacity) {
    return dn_expand(message, end, source, destination, destination_capacity);
}

/* Network-order 16-bit integer at `source`; the caller has checked that two bytes are there. */
static inline unsigned int tether_ns_get16(const unsigned char *source) {
    return ns_get16(source);
}

#endif
