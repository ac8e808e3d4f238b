/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * ivshmem: user API of the guest driver for QEMU's inter-VM shared memory
 * device. Each device is a misc character device, /dev/ivshmemN.
 *
 *   open("/dev/ivshmem0", O_RDWR)
 *   ioctl(fd, IVSHMEM_IOCTL_INFO, &info)         size, IVPosition, vectors...
 *   ioctl(fd, IVSHMEM_IOCTL_SET_CACHE, &cache)   cache mode of later mmaps
 *   mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset)
 *   ioctl(fd, IVSHMEM_IOCTL_RING, &ring)         interrupt a peer
 *   mmap(..., fd, IVSHMEM_DOORBELL_MMAP_OFFSET)  or with a store (MSI-X)
 *   read(fd, events, n * sizeof(*events))        wait for doorbells
 *   poll(fd) / select / epoll                    POLLIN while some are pending
 *   ioctl(fd, IVSHMEM_IOCTL_SET_MASK, &mask)     which vectors this file sees
 *   ioctl(fd, IVSHMEM_IOCTL_BIND_EVENTFD, &efd)  signal an eventfd on a vector
 *
 * Extending structures: every structure is passed with its size encoded in
 * the ioctl number (_IOC_SIZE), the way DRM does it. Fields are only ever
 * appended. A kernel accepts any size from the structure's first version
 * up (smaller gets -EINVAL): it reads or fills the fields both sides know,
 * requires the input fields it does not know to be zero (-E2BIG
 * otherwise) and zero-fills the output fields it does not know. Reserved
 * fields must be zero on input; unknown flags get -EINVAL.
 *
 * Once the device is gone (unbind, hot-unplug), every call on an open file
 * fails with -ENODEV, before any other check (read, poll reports
 * POLLHUP | POLLERR), and existing mappings raise SIGBUS on access.
 *
 * Calls that act on peers or on the device need a file opened for writing:
 * IVSHMEM_IOCTL_RING, IVSHMEM_IOCTL_BIND_EVENTFD and IVSHMEM_IOCTL_SET_CACHE
 * fail with -EBADF on an O_RDONLY file. INFO, SET_MASK, read, poll and
 * read-only mmap work on it.
 */
#ifndef _UAPI_LINUX_IVSHMEM_H
#define _UAPI_LINUX_IVSHMEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Not used in Documentation/userspace-api/ioctl/ioctl-number.rst (7.3). */
#define IVSHMEM_IOCTL_MAGIC 0xB9

/* ivshmem_info.features */
#define IVSHMEM_FEATURE_DOORBELL (1U << 0) /* can ring peers (ivshmem-doorbell) */
#define IVSHMEM_FEATURE_MSIX     (1U << 1) /* doorbells arrive as MSI-X */
#define IVSHMEM_FEATURE_INTX     (1U << 2) /* doorbells arrive as INTx (revision 0) */
#define IVSHMEM_FEATURE_DOORBELL_MMAP (1U << 3) /* the doorbell page can be mapped */

/*
 * The doorbell page: mmap(NULL, page size, PROT_READ | PROT_WRITE,
 * MAP_SHARED, fd, IVSHMEM_DOORBELL_MMAP_OFFSET) maps the page holding the
 * device's registers (BAR0), uncached, so that a peer is rung with a
 * 32-bit store, without a system call:
 *
 *   *(volatile __u32 *)(page + IVSHMEM_REG_DOORBELL) = peer << 16 | vector;
 *
 * This is the ring of IVSHMEM_IOCTL_RING minus its checks: a ring to an
 * absent peer or vector is dropped by QEMU. On x86 an uncached store is
 * ordered after earlier stores to write-back memory; after writes through
 * a write-combining mapping, issue a store fence first.
 *
 * Only where ivshmem_info.features has IVSHMEM_FEATURE_DOORBELL_MMAP:
 * doorbell devices with MSI-X (on a revision 0 INTx device the page holds
 * the interrupt registers the driver owns) whose register page has no
 * other device's registers (the driver reserves the rest of the page).
 * -EOPNOTSUPP elsewhere; -EINVAL unless the length is one page and the
 * mapping shared; -EACCES on an O_RDONLY file. The offset is past any
 * shared memory (x86-64 physical addresses have at most 52 bits), so
 * 32-bit processes cannot reach it. Like the shared memory, the mapping
 * raises SIGBUS once the device is gone.
 */
#define IVSHMEM_DOORBELL_MMAP_OFFSET (1ULL << 52)
#define IVSHMEM_REG_DOORBELL 12 /* offset of the Doorbell register in the page */

/* ivshmem_info.flags */
/*
 * IVPosition reads -1: a revision 0 device whose shared memory has not
 * arrived from the server yet. mmap fails with -EAGAIN meanwhile; ask again.
 */
#define IVSHMEM_INFO_NOT_READY   (1U << 0)

/**
 * struct ivshmem_info - what the device is (IVSHMEM_IOCTL_INFO)
 * @size:            bytes of shared memory (BAR2); mmap offsets and
 *                   lengths must stay within it
 * @ivposition:      this peer's id given by the ivshmem server (doorbell
 *                   devices); 0 on ivshmem-plain; -1 while not ready
 * @vectors:         doorbell vectors this peer can receive on: 0..@vectors-1.
 *                   At most IVSHMEM_MAX_VECTORS, and fewer than the device's
 *                   MSI-X table when the guest ran out of interrupt vectors
 *                   (even 0: ringing and the shared memory still work).
 *                   1 for INTx, 0 on ivshmem-plain. sysfs "vectors" says
 *                   the same.
 * @features:        IVSHMEM_FEATURE_*
 * @flags:           IVSHMEM_INFO_*
 * @index:           N of /dev/ivshmemN
 * @revision:        PCI revision (1 for current QEMU)
 * @pci_bus:         PCI bus number
 * @pci_devfn:       PCI device and function, (slot << 3) | function
 * @pad0:            zero
 * @pci_domain:      PCI domain (segment)
 * @subsystem_vendor: PCI subsystem vendor id
 * @subsystem_device: PCI subsystem id (lets a VM owner tell devices apart)
 * @reserved:        zero
 */
struct ivshmem_info {
	__u64 size;
	__s32 ivposition;
	__u32 vectors;
	__u32 features;
	__u32 flags;
	__u32 index;
	__u8  revision;
	__u8  pci_bus;
	__u8  pci_devfn;
	__u8  pad0;
	__u32 pci_domain;
	__u16 subsystem_vendor;
	__u16 subsystem_device;
	__u64 reserved[4];
};

/* ivshmem_cache.mode: how later mmaps of this open file are cached. */
#define IVSHMEM_CACHE_WB 0 /* write-back (default): fastest, coherent in QEMU */
#define IVSHMEM_CACHE_WC 1 /* write-combining */
#define IVSHMEM_CACHE_UC 2 /* uncached (UC-) */

/**
 * struct ivshmem_cache - cache mode of later mmaps (IVSHMEM_IOCTL_SET_CACHE)
 * @mode:     IVSHMEM_CACHE_*
 * @flags:    zero
 * @reserved: zero
 *
 * The setting belongs to the open file and applies to its later mmaps;
 * existing mappings keep theirs. The CPU forbids mapping the same memory
 * with different cache modes at once (PAT aliasing), so while any mapping
 * of a device exists, mmap with a different mode fails with -EBUSY.
 */
struct ivshmem_cache {
	__u32 mode;
	__u32 flags;
	__u64 reserved;
};

/* The doorbell carries 8 bits of vector: QEMU ignores the rest. */
#define IVSHMEM_MAX_VECTORS 256

/*
 * At most this many eventfds are bound to one vector of a device, over all
 * its open files; IVSHMEM_IOCTL_BIND_EVENTFD beyond that fails with
 * -ENOSPC. It bounds the work of the interrupt handler.
 */
#define IVSHMEM_MAX_EVENTFDS 64

/*
 * Of those, the files of one user (the effective uid that opened them) may
 * bind at most this many per vector, so that no user takes the slots that
 * others need; beyond, -EDQUOT. A caller with CAP_SYS_RESOURCE is exempt.
 */
#define IVSHMEM_MAX_EVENTFDS_PER_USER 16

/**
 * struct ivshmem_ring - interrupt a peer (IVSHMEM_IOCTL_RING)
 * @peer:     the peer's id (its IVPosition), 0..65535
 * @vector:   the vector to raise at that peer, 0..IVSHMEM_MAX_VECTORS - 1
 * @flags:    zero
 * @reserved: zero
 *
 * Whether that peer exists and has that vector cannot be known from the
 * guest: QEMU drops a ring to an absent peer or vector silently. Writes to
 * the shared memory made before the ring are visible to the peer when its
 * interrupt arrives. Fails with -EOPNOTSUPP on ivshmem-plain devices.
 */
struct ivshmem_ring {
	__u16 peer;
	__u16 vector;
	__u32 flags;
	__u64 reserved;
};

/**
 * struct ivshmem_mask - vectors this open file waits on (IVSHMEM_IOCTL_SET_MASK)
 * @mask:     bit v (mask[v / 64] & (1 << v % 64)) selects vector v; all set
 *            when a file is opened
 * @flags:    zero
 * @reserved: zero
 *
 * Interrupts on other vectors still count: they are reported when the mask
 * selects them again. A new mask applies at once, also to read() and poll()
 * calls already waiting on this file (in other threads).
 */
struct ivshmem_mask {
	__u64 mask[IVSHMEM_MAX_VECTORS / 64];
	__u32 flags;
	__u32 reserved0;
	__u64 reserved;
};

/**
 * struct ivshmem_eventfd - signal an eventfd on a vector (IVSHMEM_IOCTL_BIND_EVENTFD)
 * @fd:       an eventfd; -1 removes this file's binding of @vector
 * @vector:   the vector, below the device's vector count
 * @flags:    zero
 * @reserved: zero
 *
 * Each interrupt on @vector adds 1 to the eventfd. A file binds at most
 * one eventfd per vector (binding again replaces it); closing the file or
 * removing the device releases its bindings. A vector takes at most
 * IVSHMEM_MAX_EVENTFDS eventfds over all open files of the device (-ENOSPC
 * beyond), and IVSHMEM_MAX_EVENTFDS_PER_USER of one user's files (-EDQUOT
 * beyond, unless the caller has CAP_SYS_RESOURCE). -EBADF if @fd is not open or the file is O_RDONLY, -EINVAL if
 * @fd is no eventfd or @vector is not below ivshmem_info.vectors.
 */
struct ivshmem_eventfd {
	__s32 fd;
	__u16 vector;
	__u16 flags;
	__u64 reserved;
};

/**
 * struct ivshmem_event - what read() returns, one per vector that fired
 * @vector:       the vector
 * @flags:        zero
 * @count:        interrupts on it since this file last read it (or opened);
 *                QEMU merges rings that arrive before it has delivered the
 *                previous one, so this counts interrupts, not rings
 * @timestamp_ns: CLOCK_MONOTONIC time of its latest interrupt, taken in the
 *                interrupt handler: compare with clock_gettime() after
 *                waking to measure wake-up latency
 *
 * read() needs room for at least one event (-EINVAL otherwise), returns as
 * many whole events as fit (vectors not returned stay pending; the next
 * read starts after the last vector this read took, so a busy vector
 * cannot starve the others; when copying an event to the buffer faults,
 * it and the events after it are pending again, for a later read, unless
 * another reader of the file has read that vector since), blocks until
 * one is pending unless O_NONBLOCK (-EAGAIN), is interrupted by signals (-EINTR, or restarted with
 * SA_RESTART), and fails with -ENODEV once the device is gone and
 * -EOPNOTSUPP on ivshmem-plain devices (and doorbell devices with no
 * usable vector). Every open file sees every interrupt that arrives after
 * it was opened. Threads (or processes sharing the open file) may read it
 * at once: each interrupt is reported to one of them, never twice; if the
 * buffer faults part-way, the events that did not reach it stay pending
 * unless another reader of the file has reported that vector meanwhile.
 */
struct ivshmem_event {
	__u16 vector;
	__u16 flags;
	__u32 count;
	__u64 timestamp_ns;
};

#define IVSHMEM_IOCTL_INFO         _IOR(IVSHMEM_IOCTL_MAGIC, 0x00, struct ivshmem_info)
#define IVSHMEM_IOCTL_SET_CACHE    _IOW(IVSHMEM_IOCTL_MAGIC, 0x01, struct ivshmem_cache)
#define IVSHMEM_IOCTL_RING         _IOW(IVSHMEM_IOCTL_MAGIC, 0x02, struct ivshmem_ring)
#define IVSHMEM_IOCTL_SET_MASK     _IOW(IVSHMEM_IOCTL_MAGIC, 0x03, struct ivshmem_mask)
#define IVSHMEM_IOCTL_BIND_EVENTFD _IOW(IVSHMEM_IOCTL_MAGIC, 0x04, struct ivshmem_eventfd)

#endif /* _UAPI_LINUX_IVSHMEM_H */
