// SPDX-License-Identifier: GPL-2.0
/*
 * dma-buf export of a range of BAR2 (Looking Glass's KVMFR_DMABUF_CREATE).
 *
 * The buffer has no struct pages. Its CPU side is the driver's: mmap
 * becomes a mapping of BAR2 set up by Rust (ivshmem_dmabuf_mmap_rust), with
 * the node's fault path, counted so that removal zaps it; CPU access
 * brackets fail with -ENODEV once the device is gone. Device importers
 * (map_dma_buf) are refused for now with -EOPNOTSUPP at attach.
 *
 * The ops table and the export info stay in C: DEFINE_DMA_BUF_EXPORT_INFO
 * must expand here to give the buffer this module as its owner (so that
 * rmmod is refused while a buffer exists), and the ops take C types that differ
 * between the supported kernels' Rust bindings.
 */
#include <linux/dma-buf.h>
#include <linux/err.h>
#include <linux/fcntl.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "ivshmem_helpers.h"

/* Implemented in Rust (rust/raw/dmabuf.rs). */
void ivshmem_dmabuf_release_rust(void *owner);

#if IS_ENABLED(CONFIG_DMA_SHARED_BUFFER)

MODULE_IMPORT_NS("DMA_BUF");

int ivshmem_dmabuf_mmap_rust(void *owner, struct file *file,
			     struct vm_area_struct *vma);
int ivshmem_dmabuf_access_rust(void *owner);

/* A buffer: a page-aligned range of BAR2, and the Rust side that owns it. */
struct ivshmem_dmabuf {
	void *owner;
	u64 offset;
};

static int ivshmem_dmabuf_attach(struct dma_buf *dmabuf,
				 struct dma_buf_attachment *attach)
{
	return -EOPNOTSUPP;
}

/* Unreachable: every attach is refused. */
static struct sg_table *ivshmem_dmabuf_map(struct dma_buf_attachment *attach,
					   enum dma_data_direction dir)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static void ivshmem_dmabuf_unmap(struct dma_buf_attachment *attach,
				 struct sg_table *sgt,
				 enum dma_data_direction dir)
{
}

static int ivshmem_dmabuf_mmap(struct dma_buf *dmabuf,
			       struct vm_area_struct *vma)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;

	/*
	 * The dma-buf core checked that the range is inside the buffer; from
	 * here on the mapping's offset is BAR2's, as a node mapping's is.
	 */
	vma->vm_pgoff += buf->offset >> PAGE_SHIFT;
	return ivshmem_dmabuf_mmap_rust(buf->owner, vma->vm_file, vma);
}

/*
 * The memory is coherent (the host's RAM, write-back): no cache
 * maintenance, only a check that it is still there.
 */
static int ivshmem_dmabuf_begin_cpu_access(struct dma_buf *dmabuf,
					   enum dma_data_direction dir)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;

	return ivshmem_dmabuf_access_rust(buf->owner);
}

/* Nothing to flush, even once the device is gone: a clean-up SYNC works. */
static int ivshmem_dmabuf_end_cpu_access(struct dma_buf *dmabuf,
					 enum dma_data_direction dir)
{
	return 0;
}

static void ivshmem_dmabuf_release(struct dma_buf *dmabuf)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;

	ivshmem_dmabuf_release_rust(buf->owner);
	kfree(buf);
}

static const struct dma_buf_ops ivshmem_dmabuf_ops = {
	.attach = ivshmem_dmabuf_attach,
	.map_dma_buf = ivshmem_dmabuf_map,
	.unmap_dma_buf = ivshmem_dmabuf_unmap,
	.mmap = ivshmem_dmabuf_mmap,
	.begin_cpu_access = ivshmem_dmabuf_begin_cpu_access,
	.end_cpu_access = ivshmem_dmabuf_end_cpu_access,
	.release = ivshmem_dmabuf_release,
};

int ivshmem_dmabuf_export_fd(void *owner, u64 offset, u64 size, bool cloexec)
{
	DEFINE_DMA_BUF_EXPORT_INFO(info);
	struct ivshmem_dmabuf *buf;
	struct dma_buf *dmabuf;
	int fd;

	buf = kzalloc(sizeof(*buf), GFP_KERNEL);
	if (!buf) {
		ivshmem_dmabuf_release_rust(owner);
		return -ENOMEM;
	}
	buf->owner = owner;
	buf->offset = offset;
	info.ops = &ivshmem_dmabuf_ops;
	info.size = size;
	info.flags = O_RDWR;
	info.priv = buf;
	dmabuf = dma_buf_export(&info);
	if (IS_ERR(dmabuf)) {
		ivshmem_dmabuf_release_rust(owner);
		kfree(buf);
		return PTR_ERR(dmabuf);
	}
	fd = dma_buf_fd(dmabuf, cloexec ? O_CLOEXEC : 0);
	if (fd < 0)
		/* The last reference: the release op frees buf and owner. */
		dma_buf_put(dmabuf);
	return fd;
}

#else /* !CONFIG_DMA_SHARED_BUFFER */

/* A kernel without dma-buf support: CREATE is not supported. */
int ivshmem_dmabuf_export_fd(void *owner, u64 offset, u64 size, bool cloexec)
{
	ivshmem_dmabuf_release_rust(owner);
	return -EOPNOTSUPP;
}

#endif
