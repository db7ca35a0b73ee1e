#include "shim.h"

#include <rte_errno.h>
#include <rte_lcore.h>

uint16_t rvs_rx_burst(uint16_t port_id, uint16_t queue_id,
		      struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t rvs_tx_burst(uint16_t port_id, uint16_t queue_id,
		      struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			   unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void rvs_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void rvs_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

unsigned int rvs_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **objs,
				    unsigned int n)
{
	return rte_ring_enqueue_burst(r, (void *const *)objs, n, NULL);
}

unsigned int rvs_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **objs,
				    unsigned int n)
{
	return rte_ring_dequeue_burst(r, (void **)objs, n, NULL);
}

unsigned int rvs_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}

unsigned int rvs_lcore_id(void)
{
	return rte_lcore_id();
}

int rvs_errno(void)
{
	return rte_errno;
}
