/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * kvmfr compatibility: the user API of Looking Glass's kvmfr module, ABI
 * version 0.0.12, written for this project from its definitions (it is not
 * a copy of Looking Glass's kvmfr.h). The ivshmem driver accepts these
 * ioctls on /dev/ivshmemN and on its alias /dev/kvmfrN (class "kvmfr"),
 * so Looking Glass finds and opens the device as it opens kvmfr's.
 *
 *   fd = open("/dev/kvmfr0", O_RDWR);
 *   size = ioctl(fd, KVMFR_DMABUF_GETSIZE, 0);   BAR2's size, or -1
 *   mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
 *
 * Commands are matched whole: another size or direction is -ENOTTY.
 *
 * KVMFR_DMABUF_GETSIZE: no argument; returns the shared memory's size in
 * bytes as the ioctl's result. The result is an int, so a size of 2 GiB or
 * more fails with EOVERFLOW (kvmfr itself returns a truncated size there).
 * ENODEV once the device is gone.
 *
 * KVMFR_DMABUF_CREATE: a dma-buf of [offset, offset + size) of the shared
 * memory (both page aligned), as a new file descriptor, O_CLOEXEC with
 * KVMFR_DMABUF_FLAG_CLOEXEC. Not implemented by this driver yet: ENOTTY.
 */
#ifndef _UAPI_COMPAT_KVMFR_H
#define _UAPI_COMPAT_KVMFR_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define KVMFR_DMABUF_FLAG_CLOEXEC 0x1

/* 24 bytes on x86-64: 7 bytes of padding follow flags. */
struct kvmfr_dmabuf_create {
	__u8 flags;
	__u64 offset;
	__u64 size;
};

#define KVMFR_DMABUF_GETSIZE _IO('u', 0x44)
#define KVMFR_DMABUF_CREATE _IOW('u', 0x42, struct kvmfr_dmabuf_create)

#endif /* _UAPI_COMPAT_KVMFR_H */
