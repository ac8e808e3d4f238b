/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding. Declared in Rust in rust/raw/helpers.rs.
 */
#ifndef IVSHMEM_HELPERS_H
#define IVSHMEM_HELPERS_H

#include <linux/mm_types.h>
#include <linux/pci.h>

pgprot_t ivshmem_pgprot_noncached(pgprot_t prot);
pgprot_t ivshmem_pgprot_writecombine(pgprot_t prot);
pgprot_t ivshmem_pgprot_decrypted(pgprot_t prot);
int ivshmem_pci_domain_nr(struct pci_dev *pdev);
void ivshmem_wmb(void);
u64 ivshmem_ktime_ns(void);
int ivshmem_ida_alloc(unsigned int max);
void ivshmem_ida_free(unsigned int id);

#endif
