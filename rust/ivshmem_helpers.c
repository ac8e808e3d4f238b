// SPDX-License-Identifier: GPL-2.0
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding, or whose binding differs between the supported kernels. Each is
 * a few lines; all logic stays in Rust.
 */
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/mm.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/wait.h>

#include "ivshmem_helpers.h"

pgprot_t ivshmem_pgprot_noncached(pgprot_t prot)
{
	return pgprot_noncached(prot);
}

pgprot_t ivshmem_pgprot_writecombine(pgprot_t prot)
{
	return pgprot_writecombine(prot);
}

pgprot_t ivshmem_pgprot_decrypted(pgprot_t prot)
{
	return pgprot_decrypted(prot);
}

int ivshmem_pci_domain_nr(struct pci_dev *pdev)
{
	return pci_domain_nr(pdev->bus);
}

void ivshmem_wmb(void)
{
	wmb();
}

u64 ivshmem_ktime_ns(void)
{
	return ktime_get_ns();
}

/* The device numbers: DEFINE_IDA is a static initialiser Rust cannot use. */
static DEFINE_IDA(ivshmem_ida);

int ivshmem_ida_alloc(unsigned int max)
{
	return ida_alloc_max(&ivshmem_ida, max, GFP_KERNEL);
}

void ivshmem_ida_free(unsigned int id)
{
	ida_free(&ivshmem_ida, id);
}

/* An IRQ-safe spinlock (spin_lock_irqsave is a macro). */
unsigned long ivshmem_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void ivshmem_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

/*
 * A wait queue that poll tables may hold, freed after an RCU grace period
 * (wake_up_pollfree, then kfree_rcu) instead of waiting for one.
 */
struct ivshmem_waitq {
	struct wait_queue_head head;
	struct rcu_head rcu;
};

struct ivshmem_waitq *ivshmem_waitq_alloc(void)
{
	struct ivshmem_waitq *q = kzalloc(sizeof(*q), GFP_KERNEL);

	if (q)
		init_waitqueue_head(&q->head);
	return q;
}

void ivshmem_waitq_free(struct ivshmem_waitq *q)
{
	wake_up_pollfree(&q->head);
	kfree_rcu(q, rcu);
}

void ivshmem_waitq_wake_all(struct ivshmem_waitq *q)
{
	wake_up_all(&q->head);
}

void ivshmem_waitq_poll(struct ivshmem_waitq *q, struct file *file,
			poll_table *table)
{
	poll_wait(file, &q->head, table);
}

/*
 * Sleeps on @q until woken or signalled, with @lock (held, IRQs saved in
 * *@flags) released meanwhile and taken again before returning. Returns
 * whether a signal is pending.
 */
bool ivshmem_waitq_wait(struct ivshmem_waitq *q, spinlock_t *lock,
			unsigned long *flags)
{
	DEFINE_WAIT(wait);

	prepare_to_wait_exclusive(&q->head, &wait, TASK_INTERRUPTIBLE);
	spin_unlock_irqrestore(lock, *flags);
	if (!signal_pending(current))
		schedule();
	spin_lock_irqsave(lock, *flags);
	finish_wait(&q->head, &wait);
	return signal_pending(current);
}

/*
 * Interrupt handlers: the C handler of every vector calls the Rust one,
 * which says whether the interrupt was the device's. irqreturn_t stays on
 * this side.
 */
bool ivshmem_irq_rust(void *data);

static irqreturn_t ivshmem_irq(int irq, void *data)
{
	return ivshmem_irq_rust(data) ? IRQ_HANDLED : IRQ_NONE;
}

int ivshmem_request_irq(unsigned int irq, bool shared, const char *name,
			void *data)
{
	return request_irq(irq, ivshmem_irq, shared ? IRQF_SHARED : 0, name,
			   data);
}

vm_flags_t ivshmem_vm_mayshare(void)
{
	return VM_MAYSHARE;
}
