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
 * Locks: the set's lock guards its list of buffers and is never held
 * with a buffer's reservation lock (a ww_mutex; the dma-buf core holds it
 * around map, unmap, vmap and vunmap, and the revoke around
 * invalidate_mappings).
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
#include <linux/ratelimit.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

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
	/* On the revoke's list of live buffers, while it holds the file. */
	struct list_head revoke_link;
	u64 offset;
	u64 size;
	/* Set under the reservation lock by the revoke; read under it. */
	bool revoked;
	/* The kernel mapping (vmap), under the reservation lock. */
	void *vaddr;
	/* After the revoke: the page a new kernel mapping maps instead. */
	struct page *scratch;
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
 * back when told (vfio-pci's rule), on a path PCI P2P allows. The
 * reservation lock (the core takes it only after this returns) keeps the
 * revoke, and with it the unbind that frees the device's P2P state, out
 * while the path is looked at.
 */
static int ivshmem_dmabuf_attach(struct dma_buf *dmabuf,
				 struct dma_buf_attachment *attach)
{
	static DEFINE_RATELIMIT_STATE(verbose, 5 * HZ, 2);
	struct ivshmem_dmabuf *buf = dmabuf->priv;
	struct device *client = attach->dev;
	int ret = 0;

	if (!attach->peer2peer || !dma_buf_attach_revocable(attach) ||
	    !buf->set->provider)
		return -EOPNOTSUPP;
	if (!dev_is_pci(client))
		return -EOPNOTSUPP;
	dma_resv_lock(dmabuf->resv, NULL);
	if (buf->revoked)
		ret = -ENODEV;
	/* The kernel's own reason (ACS, the host bridge) is logged, rate-limited. */
	else if (pci_p2pdma_distance_many(buf->set->pdev, &client, 1,
					  __ratelimit(&verbose)) < 0)
		ret = -EOPNOTSUPP;
	dma_resv_unlock(dmabuf->resv);
	return ret;
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
 * After the revoke, a new kernel mapping maps one zeroed private page over
 * the whole range instead of BAR2, which is gone: the dma-buf core treats
 * a failing vmap as an exporter bug (WARN_ON_ONCE), and the importer was
 * told already.
 */
static int ivshmem_dmabuf_vmap_scratch(struct ivshmem_dmabuf *buf,
				       struct iosys_map *map)
{
	unsigned long i, n = buf->size >> PAGE_SHIFT;
	struct page **pages;
	struct page *page;
	void *vaddr;

	page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!page)
		return -ENOMEM;
	pages = kvmalloc_array(n, sizeof(*pages), GFP_KERNEL);
	if (!pages) {
		__free_page(page);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		pages[i] = page;
	vaddr = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	kvfree(pages);
	if (!vaddr) {
		__free_page(page);
		return -ENOMEM;
	}
	buf->scratch = page;
	buf->vaddr = vaddr;
	iosys_map_set_vaddr(map, vaddr);
	return 0;
}

/*
 * A kernel mapping for importers that ask for one (the dma-buf core counts
 * them and calls this for the first): BAR2 is the host's RAM, so
 * write-back, and shared with the host, so decrypted in a confidential
 * guest. Over a write-combining or uncached reservation of the node's
 * mappings it gets that mode (x86 allows it); while it exists, the node
 * cannot change BAR2's mode (EBUSY).
 *
 * A kernel mapping cannot be zapped: the revoke tells the importer, which
 * must dma_buf_vunmap(), and logs a buffer still vmapped.
 */
static int ivshmem_dmabuf_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;
	void *vaddr;

	dma_resv_assert_held(dmabuf->resv);
	if (buf->revoked)
		return ivshmem_dmabuf_vmap_scratch(buf, map);
	vaddr = memremap(buf->set->base + buf->offset, buf->size,
			 MEMREMAP_WB | MEMREMAP_DEC);
	if (!vaddr)
		return -ENOMEM;
	buf->vaddr = vaddr;
	iosys_map_set_vaddr(map, vaddr);
	return 0;
}

static void ivshmem_dmabuf_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ivshmem_dmabuf *buf = dmabuf->priv;

	dma_resv_assert_held(dmabuf->resv);
	if (buf->scratch) {
		vunmap(map->vaddr);
		__free_page(buf->scratch);
		buf->scratch = NULL;
	} else {
		memunmap(map->vaddr);
	}
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
 * Per buffer, vfio_pci_dma_buf_move(vdev, true)'s order: under the
 * reservation lock, mark the buffer revoked (no new attach or map; a new
 * vmap maps a scratch page), tell the importers and wait for their
 * fences; then wait, unlocked, for every mapping's unmap, which importers
 * with invalidate_mappings promise in bounded time. Unlike vfio, the set's
 * lock is not held across these waits (see below). Once per set.
 */
void ivshmem_dmabufs_revoke(struct ivshmem_dmabufs *set)
{
	struct ivshmem_dmabuf *buf, *tmp;
	LIST_HEAD(live);

	/*
	 * Under the set's lock: no export from now on, and the live buffers,
	 * each held by a file reference so that none is released meanwhile. A
	 * dying file is skipped: its release waits for the lock or comes
	 * later, and nothing can map it any more. The waits below run without
	 * the lock, so that exports fail at once and the device's other
	 * buffers are released while an importer is slow.
	 */
	mutex_lock(&set->lock);
	if (set->revoked) {
		mutex_unlock(&set->lock);
		return;
	}
	set->revoked = true;
	list_for_each_entry(buf, &set->bufs, link)
		if (get_file_active(&buf->dmabuf->file))
			list_add_tail(&buf->revoke_link, &live);
	mutex_unlock(&set->lock);

	list_for_each_entry_safe(buf, tmp, &live, revoke_link) {
		bool vmapped;

		dma_resv_lock(buf->dmabuf->resv, NULL);
		buf->revoked = true;
		dma_buf_invalidate_mappings(buf->dmabuf);
		dma_resv_wait_timeout(buf->dmabuf->resv,
				      DMA_RESV_USAGE_BOOKKEEP, false,
				      MAX_SCHEDULE_TIMEOUT);
		vmapped = buf->vaddr;
		dma_resv_unlock(buf->dmabuf->resv);
		kref_put(&buf->mapped, ivshmem_dmabuf_all_unmapped);
		/* Importers promise to unmap in bounded time: name a late one's buffer. */
		while (!wait_for_completion_timeout(&buf->unmapped, 10 * HZ))
			pci_warn(set->pdev, "removal waits for an importer of the dma-buf at %#llx to unmap it\n",
				 buf->offset);
		if (vmapped)
			pci_warn(set->pdev, "a dma-buf of BAR2 at %#llx is still in a kernel mapping (vmap) of its importer\n",
				 buf->offset);
		list_del(&buf->revoke_link);
		/* The last reference may go here: the release is deferred. */
		fput(buf->dmabuf->file);
	}
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
