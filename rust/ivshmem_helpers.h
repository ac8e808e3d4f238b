/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding. Declared in Rust in rust/raw/helpers.rs.
 */
#ifndef IVSHMEM_HELPERS_H
#define IVSHMEM_HELPERS_H

#include <linux/fs.h>
#include <linux/mm_types.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/spinlock.h>

struct ivshmem_waitq;

pgprot_t ivshmem_pgprot_noncached(pgprot_t prot);
pgprot_t ivshmem_pgprot_writecombine(pgprot_t prot);
pgprot_t ivshmem_pgprot_decrypted(pgprot_t prot);
int ivshmem_pci_domain_nr(struct pci_dev *pdev);
void ivshmem_wmb(void);
u64 ivshmem_ktime_ns(void);
int ivshmem_ida_alloc(unsigned int max);
void ivshmem_ida_free(unsigned int id);
unsigned long ivshmem_spin_lock_irqsave(spinlock_t *lock);
void ivshmem_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
struct ivshmem_waitq *ivshmem_waitq_alloc(void);
void ivshmem_waitq_free(struct ivshmem_waitq *q);
void ivshmem_waitq_wake_all(struct ivshmem_waitq *q);
void ivshmem_waitq_poll(struct ivshmem_waitq *q, struct file *file,
			poll_table *table);
bool ivshmem_waitq_wait(struct ivshmem_waitq *q, spinlock_t *lock,
			unsigned long *flags);
int ivshmem_request_irq(unsigned int irq, bool shared, const char *name,
			void *data);
vm_flags_t ivshmem_vm_mayshare(void);

#endif
