/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding. Their Rust declarations are generated from this header by
 * bindgen at build time (Kbuild) and included by rust/raw/helpers.rs.
 */
#ifndef IVSHMEM_HELPERS_H
#define IVSHMEM_HELPERS_H

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm_types.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/spinlock.h>

struct ivshmem_waitq;
struct ivshmem_waitq_relay;
struct ivshmem_kvmfr_node;
struct ivshmem_dmabufs;

/* pgprot_noncached(): the protection bits with the UC- cache mode. */
pgprot_t ivshmem_pgprot_noncached(pgprot_t prot);
/* pgprot_writecombine(): the protection bits with the WC cache mode. */
pgprot_t ivshmem_pgprot_writecombine(pgprot_t prot);
/*
 * pgprot_decrypted(): the protection bits for memory shared with the host
 * (a no-op outside confidential guests).
 */
pgprot_t ivshmem_pgprot_decrypted(pgprot_t prot);
/* pci_domain_nr(pdev->bus). */
int ivshmem_pci_domain_nr(struct pci_dev *pdev);
/*
 * wmb(): orders earlier memory writes (write-combined ones too) before
 * later ones, including MMIO.
 */
void ivshmem_wmb(void);
/*
 * ktime_get_ns(): CLOCK_MONOTONIC in nanoseconds; callable in hard IRQ
 * context (not from NMI: that is ktime_get_mono_fast_ns()).
 */
u64 ivshmem_ktime_ns(void);
/*
 * ida_alloc_max() on the driver's IDA of device numbers: the lowest free
 * number up to @max, or a negative errno (-ENOSPC when all are taken,
 * -ENOMEM). May sleep.
 */
int ivshmem_ida_alloc(unsigned int max);
/* ida_free() on the driver's IDA: @id must be allocated, not yet freed. */
void ivshmem_ida_free(unsigned int id);
/* spin_lock_irqsave(): returns the saved interrupt flags. */
unsigned long ivshmem_spin_lock_irqsave(spinlock_t *lock);
/* spin_unlock_irqrestore(). */
void ivshmem_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
/*
 * Allocates and initialises a wait queue (NULL without memory), holding
 * one reference. @relayed: the queue is woken by a relay from another
 * queue, under that queue's lock (its own lock class).
 */
struct ivshmem_waitq *ivshmem_waitq_alloc(bool relayed);
/*
 * Drops the owner's reference; at the last one, wake_up_pollfree(), then
 * frees the queue after an RCU grace period.
 */
void ivshmem_waitq_free(struct ivshmem_waitq *q);
/*
 * A relay: an entry on @from that wakes @to whenever @from is woken (with
 * the same mode and key). Holds a reference to both queues. NULL without
 * memory.
 */
struct ivshmem_waitq_relay *ivshmem_waitq_relay_add(struct ivshmem_waitq *from,
						    struct ivshmem_waitq *to);
/* Takes the relay off its queue and frees it. */
void ivshmem_waitq_relay_del(struct ivshmem_waitq_relay *relay);
/* capable(CAP_SYS_RESOURCE), for the current task. */
bool ivshmem_capable_sys_resource(void);
/* wake_up_all(). */
void ivshmem_waitq_wake_all(struct ivshmem_waitq *q);
/* poll_wait() on the queue. */
void ivshmem_waitq_poll(struct ivshmem_waitq *q, struct file *file,
			poll_table *table);
/*
 * Sleeps interruptibly on the queue with @lock (held, with *@flags saved)
 * released meanwhile; returns whether a signal is pending.
 */
bool ivshmem_waitq_wait(struct ivshmem_waitq *q, spinlock_t *lock,
			unsigned long *flags);
/*
 * request_irq() with the C handler that calls ivshmem_irq_rust() with
 * @data; IRQF_SHARED when @shared.
 */
int ivshmem_request_irq(unsigned int irq, bool shared, const char *name,
			void *data);
/* VM_MAYSHARE, from C: 7.2's Rust binding of it is wrong. */
vm_flags_t ivshmem_vm_mayshare(void);
/* What ivshmem_ioremap_cache_mode() found (mirrored in rust/raw/pat.rs). */
#define IVSHMEM_PCM_WB 0
#define IVSHMEM_PCM_WC 1
#define IVSHMEM_PCM_UC 2 /* UC or UC- */
#define IVSHMEM_PCM_OTHER 3 /* WT, WP, or no present kernel mapping */
#define IVSHMEM_PCM_NO_PAT 4 /* no x86 PAT: the mode asked for holds */
/*
 * The cache mode of the kernel mapping at @addr, which the ioremap family
 * made with the memtype it really reserved (firmware MTRRs or an existing
 * reservation can make it differ from the one asked for).
 */
int ivshmem_ioremap_cache_mode(const void *addr);
/* VM_EXEC and VM_MAYEXEC, from C for the same reason. */
vm_flags_t ivshmem_vm_exec(void);
vm_flags_t ivshmem_vm_mayexec(void);
/*
 * A Looking Glass-compatible alias of @misc: the character device
 * /dev/kvmfr<index> in class "kvmfr", child of @parent. Opening it hands
 * the file to @misc as misc_open() does (private data, file operations,
 * then @misc's open), so every later operation is @misc's. The class and
 * a region of device numbers are created on first use and dropped with
 * the last node. Returns the node; NULL when the kvmfr_nodes module
 * parameter is off, or when another module (kvmfr.ko) owns class "kvmfr"
 * (class_create() fails with -EEXIST; one line is logged); or an ERR_PTR.
 * @misc must stay registered until ivshmem_kvmfr_node_del(). May sleep.
 */
struct ivshmem_kvmfr_node *ivshmem_kvmfr_node_add(struct device *parent,
						  unsigned int index,
						  struct miscdevice *misc);
/*
 * Stops new opens of @node (an open in progress completes first), deletes
 * the node and drops the class on last use. Files opened through it stay
 * @misc's. May sleep.
 */
void ivshmem_kvmfr_node_del(struct ivshmem_kvmfr_node *node);
/*
 * Makes a new file on a new anonymous inode (so with its own address
 * space; its file operations hold this module) the file of @vma, which is
 * being set up by the mmap of a sysfs binary attribute. kernfs then leaves
 * the VMA's operations alone (huge faults, close). Returns the new file,
 * which the VMA holds, or an ERR_PTR. May sleep.
 */
struct file *ivshmem_vma_own_file(struct vm_area_struct *vma);
/*
 * The dma-bufs of one device (rust/ivshmem_dmabuf.c): the list to revoke,
 * and the PCI peer-to-peer provider of BAR @bar that device importers map
 * through. A kernel or device without PCI P2P support gets a set whose
 * buffers refuse device importers (-EOPNOTSUPP at attach); CPU access
 * works either way. Returns the set (one reference) or an ERR_PTR. May
 * sleep; @pdev is being probed.
 */
struct ivshmem_dmabufs *ivshmem_dmabufs_new(struct pci_dev *pdev, int bar);
/*
 * Revokes every buffer of @set: importers are told (invalidate_mappings),
 * their fences waited for and their mappings' unmaps awaited; later
 * attaches, maps and exports get -ENODEV, and a later vmap maps a zeroed
 * page. CPU mappings are the caller's to zap. Call before the BAR is
 * released. May sleep, for as long as importers take to unmap; exports
 * and releases of the set's buffers are not held up meanwhile.
 */
void ivshmem_dmabufs_revoke(struct ivshmem_dmabufs *set);
/* Drops a reference to @set; each buffer holds one too. */
void ivshmem_dmabufs_put(struct ivshmem_dmabufs *set);
/*
 * Exports [@offset, @offset + @size) of the BAR of @set (page-aligned,
 * inside it) as a dma-buf, opened read-write, and installs a descriptor for
 * it, close-on-exec when @cloexec. @owner, the Rust side of the buffer, is
 * consumed on success and on failure: ivshmem_dmabuf_release_rust() gets
 * it back, when the buffer is released or at once. Returns the descriptor,
 * -ENODEV once @set is revoked, or a negative errno. The buffer holds this
 * module and @set.
 */
int ivshmem_dmabuf_export_fd(struct ivshmem_dmabufs *set, void *owner,
			     u64 offset, u64 size, bool cloexec);

#endif
