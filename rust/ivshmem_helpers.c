// SPDX-License-Identifier: GPL-2.0
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding. Each is one line; all logic stays in Rust.
 */
#include <linux/idr.h>
#include <linux/mm.h>
#include <linux/pci.h>
#include <linux/timekeeping.h>

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
