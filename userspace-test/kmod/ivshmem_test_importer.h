/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The ioctls of /dev/ivshmem_test_importer, a dma-buf importer for the
 * suite (userspace-test/kmod/ivshmem_test_importer.c). Each open file
 * holds at most one attachment.
 */
#ifndef IVSHMEM_TEST_IMPORTER_H
#define IVSHMEM_TEST_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* ATTACH flags: the importer's dma_buf_attach_ops. None: a static attach. */
#define ITI_P2P (1u << 0)		/* allow_peer2peer */
#define ITI_REVOCABLE (1u << 1)	/* invalidate_mappings */
/*
 * With ITI_REVOCABLE: invalidate_mappings unmaps 500 ms later, from a work
 * item, as a slow importer may (the exporter must wait for the unmap).
 */
#define ITI_DEFER (1u << 2)

struct iti_attach {
	__s32 fd;		/* the dma-buf */
	__u32 flags;		/* ITI_* */
	char device[32];	/* the importing PCI device, "0000:00:03.0" */
};

#define ITI_MAX_RANGES 16

struct iti_range {
	__u64 addr;		/* DMA (bus) address */
	__u64 len;
};

struct iti_map {
	__u32 count;		/* out: ranges in the mapping */
	__u32 pad;
	struct iti_range ranges[ITI_MAX_RANGES];
};

struct iti_status {
	__u32 invalidations;	/* invalidate_mappings calls */
	__u32 mapped;		/* 1 while the attachment is mapped */
};

struct iti_vmap_read {
	__s32 fd;		/* the dma-buf */
	__u32 len;		/* at most 64 */
	__u64 offset;		/* in the buffer */
	__u8 data[64];		/* out */
};

#define ITI_ATTACH _IOW('I', 1, struct iti_attach)
#define ITI_MAP _IOR('I', 2, struct iti_map)	/* map the attachment */
#define ITI_UNMAP _IO('I', 3)
#define ITI_STATUS _IOR('I', 4, struct iti_status)
#define ITI_VMAP_READ _IOWR('I', 5, struct iti_vmap_read)
#define ITI_DETACH _IO('I', 6)

#endif
