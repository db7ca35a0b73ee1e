/* Non-inline wrappers for the DPDK static inline functions, macros and TLS
 * variables that bindgen cannot see. Only things called per burst or on the
 * control path belong here: per-packet field access (mtod, lengths) is done
 * in Rust on the bindgen'd struct rte_mbuf. */
#ifndef RVS_SHIM_H
#define RVS_SHIM_H

#include <stdint.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

/* RSS hash functions rvs asks for when a port has several RX queues. The
 * RTE_ETH_RSS_* macros use RTE_BIT64(), which bindgen cannot evaluate; an
 * enum constant lets clang do it (every bit involved is below 32). */
enum {
	RVS_ETH_RSS_IP_TCP_UDP = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP,
};

uint16_t rvs_rx_burst(uint16_t port_id, uint16_t queue_id,
		      struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rvs_tx_burst(uint16_t port_id, uint16_t queue_id,
		      struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			   unsigned int count);
void rvs_pktmbuf_free(struct rte_mbuf *m);
void rvs_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

/* Rings of mbuf pointers (the benchmark's ring-backed ports). */
unsigned int rvs_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **objs,
				    unsigned int n);
unsigned int rvs_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **objs,
				    unsigned int n);
unsigned int rvs_ring_count(const struct rte_ring *r);

unsigned int rvs_lcore_id(void);
int rvs_errno(void);

#endif
