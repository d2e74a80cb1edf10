#ifndef TETHER_CRESOLV_SHIM_H
#define TETHER_CRESOLV_SHIM_H
/* glibc's res_n* functions are macros Swift cannot import: these wrappers make one SRV lookup
   on a private, heap-allocated resolver state (thread-safe), and parse the answer with ns_*. */
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned short priority;
    unsigned short weight;
    unsigned short port;
    char target[NS_MAXDNAME];
} tether_srv_record;

/* Queries SRV records for `name`. Returns the answer length, or -1 with *resolver_error set to
   h_errno (HOST_NOT_FOUND, NO_DATA, TRY_AGAIN, NO_RECOVERY). `nameserver` (IPv4) overrides
   /etc/resolv.conf when not NULL. */
static inline int tether_srv_query(const char *name, unsigned char *answer, int answer_capacity,
                                   const char *nameserver, int nameserver_port,
                                   int timeout_seconds, int attempts, int *resolver_error) {
    struct __res_state *state = calloc(1, sizeof(struct __res_state));
    if (state == NULL) { *resolver_error = NO_RECOVERY; return -1; }
    if (res_ninit(state) != 0) { free(state); *resolver_error = NO_RECOVERY; return -1; }
    state->retrans = timeout_seconds;
    state->retry = attempts;
    if (nameserver != NULL) {
        struct sockaddr_in address;
        memset(&address, 0, sizeof(address));
        address.sin_family = AF_INET;
        address.sin_port = htons((unsigned short)nameserver_port);
        if (inet_pton(AF_INET, nameserver, &address.sin_addr) != 1) {
            res_nclose(state); free(state); *resolver_error = NO_RECOVERY; return -1;
        }
        state->nscount = 1;
        state->nsaddr_list[0] = address;
    }
    int length = res_nquery(state, name, ns_c_in, ns_t_srv, answer, answer_capacity);
    *resolver_error = length < 0 ? state->res_h_errno : 0;
    res_nclose(state);
    free(state);
    return length;
}

/* Extracts up to `capacity` SRV records from an answer; other record types are skipped.
   Returns the count, or -1 for a malformed answer. */
static inline int tether_srv_parse(const unsigned char *answer, int length, tether_srv_record *records, int capacity) {
    ns_msg message;
    if (ns_initparse(answer, length, &message) < 0) return -1;
    int count = ns_msg_count(message, ns_s_an);
    int found = 0;
    for (int index = 0; index < count && found < capacity; index++) {
        ns_rr record;
        if (ns_parserr(&message, ns_s_an, index, &record) < 0) return -1;
        if (ns_rr_type(record) != ns_t_srv) continue;
        if (ns_rr_rdlen(record) < 7) return -1;
        const unsigned char *data = ns_rr_rdata(record);
        records[found].priority = ns_get16(data);
        records[found].weight = ns_get16(data + 2);
        records[found].port = ns_get16(data + 4);
        if (dn_expand(ns_msg_base(message), ns_msg_end(message), data + 6, records[found].target, sizeof(records[found].target)) < 0) return -1;
        found++;
    }
    return found;
}
#endif
