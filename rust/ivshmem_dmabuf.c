// SPDX-License-Identifier: GPL-2.0
/*
 * dma-buf export of a range of BAR2 (Looking Glass's KVMFR_DMABUF_CREATE).
 *
 * The buffer has no struct pages. Its CPU side is the driver's: mmap
 * becomes a mapping of BAR2 set up by Rust (ivshmem_dmabuf_mmap_rust), with
 * the node's fault path, counted so that removal zaps it; CPU access
 * brackets fail with -ENODEV once the device is gone.
 *
 * Device importers get the range's bus addresses as vfio-pci's export of
 * MMIO regions gives them (drivers/vfio/pci/vfio_pci_dmabuf.c): through the
 * PCI peer-to-peer provider of BAR2 and dma_buf_phys_vec_to_sgt(), and only
 * if they can take memory without struct pages (allow_peer2peer) and be
 * revoked (invalidate_mappings), since removal must take the memory back in
 * bounded time. Removal revokes every buffer of the device (see
 * ivshmem_dmabufs_revoke()) before BAR2 is released.
 *
 * The ops table and the export info stay in C: DEFINE_DMA_BUF_EXPORT_INFO
 * must expand here to give the buffer this module as its owner (so that
 * rmmod is refused while a buffer exists), and the ops take C types that differ
 * between the supported kernels' Rust bindings.
 *
 * Locks, outermost first: the set's lock, then a buffer's reservation lock
 * (a ww_mutex; the dma-buf core holds it around map, unmap, vmap and
 * vunmap, and importers around invalidate_mappings).
 */
#include <linux/completion.h>
#include <linux/dma-buf.h>
#include <linux/dma-buf-mapping.h>
#include <linux/dma-resv.h>
#include <linux/err.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/io.h>
#include <linux/iosys-map.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/slab.h>

#include "ivshmem_helpers.h"

/* Implemented in Rust (rust/raw/dmabuf.rs). */
void ivshmem_dmabuf_release_rust(void *owner);

/*
 * The buffers of one device. The device holds a reference until it goes,
 * and every buffer one until its release, so that a buffer that outlives
 * the device can still take the lock to leave the list.
 */
struct ivshmem_dmabufs {
	struct kref ref;
	/* Guards bufs and revoked. */
	struct mutex lock;
	struct list_head bufs;
	bool revoked;
	/* Held (pci_dev_get) until the set is freed. */
	struct pci_dev *pdev;
	/* BAR's CPU physical address. */
	phys_addr_t base;
	/* NULL without PCI P2P: device importers are refused. */
	struct p2pdma_provider *provider;
};

static void ivshmem_dmabufs_free(struct kref *ref)
{
	struct ivshmem_dmabufs *set = container_of(ref, struct ivshmem_dmabufs, ref);

	WARN_ON(!list_empty(&set->bufs));
	pci_dev_put(set->pdev);
	kfree(set);
}

void ivshmem_dmabufs_put(struct ivshmem_dmabufs *set)
{
	kref_put(&set->ref, ivshmem_dmabufs_free);
}

struct ivshmem_dmabufs *ivshmem_dmabufs_new(struct pci_dev *pdev, int bar)
{
	struct ivshmem_dmabufs *set;
	int ret;

	set = kzalloc(sizeof(*set), GFP_KERNEL);
	if (!set)
		return ERR_PTR(-ENOMEM);
	kref_init(&set->ref);
	mutex_init(&set->lock);
	INIT_LIST_HEAD(&set->bufs);
	set->pdev = pci_dev_get(pdev);
	set->base = pci_resource_start(pdev, bar);
	/*
	 * Device-managed: the provider lives until the driver is unbound, and
	 * every buffer is revoked before that (ivshmem_dmabufs_revoke()).
	 */
	ret = pcim_p2pdma_init(pdev);
	if (!ret)
		set->provider = pcim_p2pdma_provider(pdev, bar);
	if (!set->provider)
		pci_info(pdev, "no PCI peer-to-peer support (%d): dma-bufs of BAR%d are for CPU access only\n",
			 ret, bar);
	return set;
}

#if IS_ENABLED(CONFIG_DMA_SHARED_BUFFER)

MODULE_IMPORT_NS("DMA_BUF");

int ivshmem_dmabuf_mmap_rust(void *owner, struct file *file,
			     struct vm_area_struct *vma);
int ivshmem_dmabuf_access_rust(void *owner);

/* A buffer: a page-aligned range of the BAR, and the Rust side that owns it. */
struct ivshmem_dmabuf {
	void *owner;
	struct ivshmem_dmabufs *set;
	struct dma_buf *dmabuf;
	/* On set->bufs until the release. */
	struct list_head link;
	u64 offset;
	u64 size;
	/* Set under the reservation lock by the revoke; read under it. */
	bool revoked;
	/* Kernel mappings (vmap), under the reservation lock. */
	void *vaddr;
	/*
	 * One reference for the buffer, one per importer mapping; the revoke
	 * drops the buffer's and waits for the count to reach zero.
	 */
	struct kref mapped;
	struct completion unmapped;
};

static void ivshmem_dmabuf_all_unmapped(struct kref *ref)
{
	struct ivshmem_dmabuf *buf = container_of(ref, struct ivshmem_dmabuf, mapped);

	complete(&buf->unmapped);
}

/*
 * Only importers that can take memory without struct pages, and give it
 * back when told (vfio-pci's rule), on a path PCI P2P allows.
 */
static int ivshmem_dmabuf_attach(struct dma_buf *dmabuf,
				 struct dma_buf_attachment *attach)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;
	struct device *client = attach->dev;

	if (!attach->peer2peer || !dma_buf_attach_revocable(attach) ||
	    !buf->set->provider)
		return -EOPNOTSUPP;
	if (READ_ONCE(buf->revoked))
		return -ENODEV;
	/* The kernel's own reason is logged (ACS, or the host bridge). */
	if (!dev_is_pci(client) ||
	    pci_p2pdma_distance_many(buf->set->pdev, &client, 1, true) < 0)
		return -EOPNOTSUPP;
	return 0;
}

static struct sg_table *ivshmem_dmabuf_map(struct dma_buf_attachment *attach,
					   enum dma_data_direction dir)
{
	struct ivshmem_dmabuf *buf = attach->dmabuf->priv;
	struct phys_vec range = {
		.paddr = buf->set->base + buf->offset,
		.len = buf->size,
	};
	struct sg_table *sgt;

	dma_resv_assert_held(buf->dmabuf->resv);
	if (buf->revoked)
		return ERR_PTR(-ENODEV);
	sgt = dma_buf_phys_vec_to_sgt(attach, buf->set->provider, &range, 1,
				      buf->size, dir);
	if (!IS_ERR(sgt))
		kref_get(&buf->mapped);
	return sgt;
}

static void ivshmem_dmabuf_unmap(struct dma_buf_attachment *attach,
				 struct sg_table *sgt,
				 enum dma_data_direction dir)
{
	struct ivshmem_dmabuf *buf = attach->dmabuf->priv;

	dma_resv_assert_held(buf->dmabuf->resv);
	dma_buf_free_sgt(attach, sgt, dir);
	kref_put(&buf->mapped, ivshmem_dmabuf_all_unmapped);
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
 * A kernel mapping for importers that ask for one (the dma-buf core counts
 * them and calls this for the first). Write-back, as user mappings are by
 * default; memremap() fails if BAR2 is reserved with another memtype (the
 * node mapped write-combining), and then the core WARNs once.
 *
 * A kernel mapping cannot be zapped: the revoke tells the importer, which
 * must vunmap (dma_buf_vunmap), and logs a buffer still vmapped.
 */
static int ivshmem_dmabuf_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;
	void *vaddr;

	dma_resv_assert_held(dmabuf->resv);
	if (buf->revoked)
		return -ENODEV;
	vaddr = memremap(buf->set->base + buf->offset, buf->size, MEMREMAP_WB);
	if (!vaddr)
		return -EBUSY;
	buf->vaddr = vaddr;
	iosys_map_set_vaddr(map, vaddr);
	return 0;
}

static void ivshmem_dmabuf_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;

	dma_resv_assert_held(dmabuf->resv);
	memunmap(map->vaddr);
	buf->vaddr = NULL;
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
	struct ivshmem_dmabufs *set = buf->set;

	mutex_lock(&set->lock);
	list_del_init(&buf->link);
	mutex_unlock(&set->lock);
	ivshmem_dmabuf_release_rust(buf->owner);
	kfree(buf);
	ivshmem_dmabufs_put(set);
}

static const struct dma_buf_ops ivshmem_dmabuf_ops = {
	.attach = ivshmem_dmabuf_attach,
	.map_dma_buf = ivshmem_dmabuf_map,
	.unmap_dma_buf = ivshmem_dmabuf_unmap,
	.mmap = ivshmem_dmabuf_mmap,
	.vmap = ivshmem_dmabuf_vmap,
	.vunmap = ivshmem_dmabuf_vunmap,
	.begin_cpu_access = ivshmem_dmabuf_begin_cpu_access,
	.end_cpu_access = ivshmem_dmabuf_end_cpu_access,
	.release = ivshmem_dmabuf_release,
};

/*
 * vfio_pci_dma_buf_move(vdev, true)'s order: under the reservation lock,
 * mark the buffer revoked (no new map or vmap), tell the importers and
 * wait for their fences; then wait, unlocked, for every mapping's unmap,
 * which importers with invalidate_mappings promise in bounded time. A
 * buffer whose file is already dying is skipped: its release, which takes
 * the set's lock, is waiting for ours or comes later, and nothing can map
 * it any more.
 */
void ivshmem_dmabufs_revoke(struct ivshmem_dmabufs *set)
{
	struct ivshmem_dmabuf *buf;

	mutex_lock(&set->lock);
	set->revoked = true;
	list_for_each_entry(buf, &set->bufs, link) {
		bool vmapped;

		/* Revoked once; a dying file is skipped (see above). */
		if (buf->revoked || !get_file_active(&buf->dmabuf->file))
			continue;
		dma_resv_lock(buf->dmabuf->resv, NULL);
		WRITE_ONCE(buf->revoked, true);
		dma_buf_invalidate_mappings(buf->dmabuf);
		dma_resv_wait_timeout(buf->dmabuf->resv,
				      DMA_RESV_USAGE_BOOKKEEP, false,
				      MAX_SCHEDULE_TIMEOUT);
		vmapped = buf->vaddr;
		dma_resv_unlock(buf->dmabuf->resv);
		kref_put(&buf->mapped, ivshmem_dmabuf_all_unmapped);
		wait_for_completion(&buf->unmapped);
		if (vmapped)
			pci_warn(set->pdev, "a dma-buf of BAR2 at %#llx is still in a kernel mapping (vmap) of its importer\n",
				 buf->offset);
		/* The last reference may go here: the release is deferred. */
		fput(buf->dmabuf->file);
	}
	mutex_unlock(&set->lock);
}

int ivshmem_dmabuf_export_fd(struct ivshmem_dmabufs *set, void *owner,
			     u64 offset, u64 size, bool cloexec)
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
	buf->set = set;
	buf->offset = offset;
	buf->size = size;
	INIT_LIST_HEAD(&buf->link);
	kref_init(&buf->mapped);
	init_completion(&buf->unmapped);
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
	buf->dmabuf = dmabuf;
	/* The buffer's reference, dropped by the release op from now on. */
	kref_get(&set->ref);
	mutex_lock(&set->lock);
	if (set->revoked) {
		mutex_unlock(&set->lock);
		/* The last reference: the release op frees buf and owner. */
		dma_buf_put(dmabuf);
		return -ENODEV;
	}
	list_add_tail(&buf->link, &set->bufs);
	mutex_unlock(&set->lock);
	fd = dma_buf_fd(dmabuf, cloexec ? O_CLOEXEC : 0);
	if (fd < 0)
		/* The last reference: the release op frees buf and owner. */
		dma_buf_put(dmabuf);
	return fd;
}

#else /* !CONFIG_DMA_SHARED_BUFFER */

/* A kernel without dma-buf support: CREATE is not supported. */
int ivshmem_dmabuf_export_fd(struct ivshmem_dmabufs *set, void *owner,
			     u64 offset, u64 size, bool cloexec)
{
	ivshmem_dmabuf_release_rust(owner);
	return -EOPNOTSUPP;
}

void ivshmem_dmabufs_revoke(struct ivshmem_dmabufs *set)
{
}

#endif
