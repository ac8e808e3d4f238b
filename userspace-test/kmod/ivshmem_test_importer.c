// SPDX-License-Identifier: GPL-2.0
/*
 * A dma-buf importer for the suite, not shipped: it lets a test attach a
 * PCI device of its choosing to a dma-buf, the way a GPU driver does when
 * user space hands it one, and see what the exporter gives that device.
 *
 * /dev/ivshmem_test_importer; each open file holds at most one attachment
 * (ivshmem_test_importer.h has the ioctls):
 *   ITI_ATTACH     dma_buf_get() + attach of the named PCI device, with or
 *                  without allow_peer2peer and invalidate_mappings;
 *   ITI_MAP        map the attachment (dma_buf_map_attachment) and return
 *                  its DMA ranges;
 *   ITI_UNMAP      unmap it;
 *   ITI_STATUS     how often the exporter invalidated, and whether mapped;
 *   ITI_VMAP_READ  read bytes of a dma-buf through dma_buf_vmap();
 *   ITI_DETACH     detach (also on close).
 * invalidate_mappings unmaps at once, under the reservation lock the
 * exporter holds, or with ITI_DEFER 500 ms later from a work item (an
 * importer whose device must finish first): either way in bounded time,
 * as a revocable importer promises.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/fs.h>
#include <linux/iosys-map.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "ivshmem_test_importer.h"

MODULE_IMPORT_NS("DMA_BUF");

struct iti_file {
	/* Serialises the ioctls of one file. */
	struct mutex lock;
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	/* The importing device, referenced while attached. */
	struct device *dev;
	/* The mapping, under the buffer's reservation lock. */
	struct sg_table *sgt;
	atomic_t invalidations;
	/* ITI_DEFER: the unmap invalidate_mappings asked for. */
	bool defer;
	struct delayed_work unmap_work;
};

/* Under the buffer's reservation lock. */
static void iti_unmap_locked(struct iti_file *f)
{
	if (f->sgt) {
		dma_buf_unmap_attachment(f->attach, f->sgt, DMA_BIDIRECTIONAL);
		f->sgt = NULL;
	}
}

static void iti_unmap(struct iti_file *f)
{
	dma_resv_lock(f->dmabuf->resv, NULL);
	iti_unmap_locked(f);
	dma_resv_unlock(f->dmabuf->resv);
}

static void iti_unmap_work(struct work_struct *work)
{
	struct iti_file *f = container_of(to_delayed_work(work), struct iti_file, unmap_work);

	iti_unmap(f);
}

static void iti_invalidate(struct dma_buf_attachment *attach)
{
	struct iti_file *f = attach->importer_priv;

	dma_resv_assert_held(attach->dmabuf->resv);
	atomic_inc(&f->invalidations);
	if (f->defer)
		schedule_delayed_work(&f->unmap_work, msecs_to_jiffies(500));
	else
		iti_unmap_locked(f);
}

static const struct dma_buf_attach_ops iti_ops[] = {
	[ITI_P2P] = { .allow_peer2peer = true },
	[ITI_REVOCABLE] = { .invalidate_mappings = iti_invalidate },
	[ITI_P2P | ITI_REVOCABLE] = {
		.allow_peer2peer = true,
		.invalidate_mappings = iti_invalidate,
	},
};

static void iti_detach(struct iti_file *f)
{
	if (!f->attach)
		return;
	cancel_delayed_work_sync(&f->unmap_work);
	iti_unmap(f);
	dma_buf_detach(f->dmabuf, f->attach);
	dma_buf_put(f->dmabuf);
	put_device(f->dev);
	f->attach = NULL;
	f->dmabuf = NULL;
	f->dev = NULL;
}

static int iti_attach(struct iti_file *f, struct iti_attach __user *arg)
{
	struct dma_buf_attachment *attach;
	struct iti_attach req;
	struct dma_buf *dmabuf;
	struct device *dev;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags & ~(ITI_P2P | ITI_REVOCABLE | ITI_DEFER) ||
	    (req.flags & ITI_DEFER && !(req.flags & ITI_REVOCABLE)))
		return -EINVAL;
	if (f->attach)
		return -EBUSY;
	req.device[sizeof(req.device) - 1] = 0;
	dev = bus_find_device_by_name(&pci_bus_type, NULL, req.device);
	if (!dev)
		return -ENXIO;
	dmabuf = dma_buf_get(req.fd);
	if (IS_ERR(dmabuf)) {
		put_device(dev);
		return PTR_ERR(dmabuf);
	}
	f->defer = req.flags & ITI_DEFER;
	req.flags &= ~ITI_DEFER;
	if (req.flags)
		attach = dma_buf_dynamic_attach(dmabuf, dev, &iti_ops[req.flags], f);
	else
		attach = dma_buf_attach(dmabuf, dev);
	if (IS_ERR(attach)) {
		dma_buf_put(dmabuf);
		put_device(dev);
		return PTR_ERR(attach);
	}
	f->dmabuf = dmabuf;
	f->attach = attach;
	f->dev = dev;
	return 0;
}

static int iti_map(struct iti_file *f, struct iti_map __user *arg)
{
	struct iti_map *out;
	struct scatterlist *sg;
	struct sg_table *sgt;
	int ret = 0;
	int i;

	if (!f->attach)
		return -EINVAL;
	out = kzalloc(sizeof(*out), GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	dma_resv_lock(f->dmabuf->resv, NULL);
	if (f->sgt) {
		ret = -EBUSY;
		goto unlock;
	}
	sgt = dma_buf_map_attachment(f->attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt)) {
		ret = PTR_ERR(sgt);
		goto unlock;
	}
	f->sgt = sgt;
	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (out->count < ITI_MAX_RANGES) {
			out->ranges[out->count].addr = sg_dma_address(sg);
			out->ranges[out->count].len = sg_dma_len(sg);
		}
		out->count++;
	}
unlock:
	dma_resv_unlock(f->dmabuf->resv);
	if (!ret && copy_to_user(arg, out, sizeof(*out)))
		ret = -EFAULT;
	kfree(out);
	return ret;
}

static int iti_status(struct iti_file *f, struct iti_status __user *arg)
{
	struct iti_status st = {
		.invalidations = atomic_read(&f->invalidations),
	};

	if (f->attach) {
		dma_resv_lock(f->dmabuf->resv, NULL);
		st.mapped = !!f->sgt;
		dma_resv_unlock(f->dmabuf->resv);
	}
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

static int iti_vmap_read(struct iti_vmap_read __user *arg)
{
	struct iti_vmap_read req;
	struct iosys_map map;
	struct dma_buf *dmabuf;
	u64 end;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.len > sizeof(req.data))
		return -EINVAL;
	dmabuf = dma_buf_get(req.fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);
	if (check_add_overflow(req.offset, (u64)req.len, &end) ||
	    end > dmabuf->size) {
		ret = -EINVAL;
		goto put;
	}
	ret = dma_buf_vmap_unlocked(dmabuf, &map);
	if (ret)
		goto put;
	iosys_map_memcpy_from(req.data, &map, req.offset, req.len);
	dma_buf_vunmap_unlocked(dmabuf, &map);
	if (copy_to_user(arg, &req, sizeof(req)))
		ret = -EFAULT;
put:
	dma_buf_put(dmabuf);
	return ret;
}

static long iti_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct iti_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret;

	mutex_lock(&f->lock);
	switch (cmd) {
	case ITI_ATTACH:
		ret = iti_attach(f, uarg);
		break;
	case ITI_MAP:
		ret = iti_map(f, uarg);
		break;
	case ITI_UNMAP:
		ret = f->attach ? (iti_unmap(f), 0) : -EINVAL;
		break;
	case ITI_STATUS:
		ret = iti_status(f, uarg);
		break;
	case ITI_VMAP_READ:
		ret = iti_vmap_read(uarg);
		break;
	case ITI_DETACH:
		ret = f->attach ? (iti_detach(f), 0) : -EINVAL;
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&f->lock);
	return ret;
}

static int iti_open(struct inode *inode, struct file *file)
{
	struct iti_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	atomic_set(&f->invalidations, 0);
	INIT_DELAYED_WORK(&f->unmap_work, iti_unmap_work);
	file->private_data = f;
	return 0;
}

static int iti_release(struct inode *inode, struct file *file)
{
	struct iti_file *f = file->private_data;

	iti_detach(f);
	mutex_destroy(&f->lock);
	kfree(f);
	return 0;
}

static const struct file_operations iti_fops = {
	.owner = THIS_MODULE,
	.open = iti_open,
	.release = iti_release,
	.unlocked_ioctl = iti_ioctl,
};

static struct miscdevice iti_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "ivshmem_test_importer",
	.fops = &iti_fops,
	.mode = 0600,
};

module_misc_device(iti_misc);

MODULE_DESCRIPTION("dma-buf importer for the ivshmem driver's tests");
MODULE_LICENSE("GPL");
