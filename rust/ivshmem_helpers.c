// SPDX-License-Identifier: GPL-2.0
/*
 * Forwarders to kernel macros and inline functions that have no Rust
 * binding, or whose binding differs between the supported kernels. Each is
 * a few lines; all logic stays in Rust.
 */
#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/wait.h>
#include <linux/xarray.h>

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

/* An IRQ-safe spinlock (spin_lock_irqsave is a macro). */
unsigned long ivshmem_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void ivshmem_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

/*
 * A wait queue that poll tables may hold, freed after an RCU grace period
 * (wake_up_pollfree, then kfree_rcu) instead of waiting for one.
 */
struct ivshmem_waitq {
	struct wait_queue_head head;
	refcount_t ref;
	struct rcu_head rcu;
};

static struct lock_class_key ivshmem_device_waitq_key;
static struct lock_class_key ivshmem_file_waitq_key;

struct ivshmem_waitq *ivshmem_waitq_alloc(bool relayed)
{
	struct ivshmem_waitq *q = kzalloc(sizeof(*q), GFP_KERNEL);

	if (!q)
		return NULL;
	init_waitqueue_head(&q->head);
	/*
	 * Two lock classes: a relayed queue's lock is taken under the lock of
	 * the queue relaying to it.
	 */
	if (relayed)
		lockdep_set_class_and_name(&q->head.lock, &ivshmem_file_waitq_key,
					   "ivshmem_file_waitq");
	else
		lockdep_set_class_and_name(&q->head.lock, &ivshmem_device_waitq_key,
					   "ivshmem_device_waitq");
	refcount_set(&q->ref, 1);
	return q;
}

static void ivshmem_waitq_put(struct ivshmem_waitq *q)
{
	if (refcount_dec_and_test(&q->ref)) {
		wake_up_pollfree(&q->head);
		kfree_rcu(q, rcu);
	}
}

void ivshmem_waitq_free(struct ivshmem_waitq *q)
{
	ivshmem_waitq_put(q);
}

struct ivshmem_waitq_relay {
	struct wait_queue_entry entry;
	struct ivshmem_waitq *from;
	struct ivshmem_waitq *to;
};

static int ivshmem_waitq_relay_wake(struct wait_queue_entry *entry,
				    unsigned int mode, int sync, void *key)
{
	struct ivshmem_waitq_relay *r =
		container_of(entry, struct ivshmem_waitq_relay, entry);

	/*
	 * Most files have nobody waiting: skip their lock (this runs in the
	 * interrupt handler, once per open file). No wake-up is lost: a
	 * waiter joins its queue before it drops the lock under which the
	 * waker changed what it waits for, and the waker wakes after that.
	 */
	if (!waitqueue_active(&r->to->head))
		return 0;
	__wake_up(&r->to->head, mode, 0, key);
	/* Not an exclusive waiter: the walk of @from goes on. */
	return 0;
}

struct ivshmem_waitq_relay *ivshmem_waitq_relay_add(struct ivshmem_waitq *from,
						    struct ivshmem_waitq *to)
{
	struct ivshmem_waitq_relay *r = kzalloc(sizeof(*r), GFP_KERNEL);

	if (!r)
		return NULL;
	init_waitqueue_func_entry(&r->entry, ivshmem_waitq_relay_wake);
	refcount_inc(&from->ref);
	refcount_inc(&to->ref);
	r->from = from;
	r->to = to;
	add_wait_queue(&from->head, &r->entry);
	return r;
}

void ivshmem_waitq_relay_del(struct ivshmem_waitq_relay *r)
{
	remove_wait_queue(&r->from->head, &r->entry);
	ivshmem_waitq_put(r->from);
	ivshmem_waitq_put(r->to);
	kfree(r);
}

bool ivshmem_capable_sys_resource(void)
{
	return capable(CAP_SYS_RESOURCE);
}

void ivshmem_waitq_wake_all(struct ivshmem_waitq *q)
{
	wake_up_all(&q->head);
}

void ivshmem_waitq_poll(struct ivshmem_waitq *q, struct file *file,
			poll_table *table)
{
	poll_wait(file, &q->head, table);
}

/*
 * Sleeps on @q until woken or signalled, with @lock (held, IRQs saved in
 * *@flags) released meanwhile and taken again before returning. Returns
 * whether a signal is pending.
 */
bool ivshmem_waitq_wait(struct ivshmem_waitq *q, spinlock_t *lock,
			unsigned long *flags)
{
	DEFINE_WAIT(wait);

	prepare_to_wait_exclusive(&q->head, &wait, TASK_INTERRUPTIBLE);
	spin_unlock_irqrestore(lock, *flags);
	if (!signal_pending(current))
		schedule();
	spin_lock_irqsave(lock, *flags);
	finish_wait(&q->head, &wait);
	return signal_pending(current);
}

/*
 * Interrupt handlers: the C handler of every vector calls the Rust one,
 * which says whether the interrupt was the device's. irqreturn_t stays on
 * this side.
 */
bool ivshmem_irq_rust(void *data);

static irqreturn_t ivshmem_irq(int irq, void *data)
{
	return ivshmem_irq_rust(data) ? IRQ_HANDLED : IRQ_NONE;
}

int ivshmem_request_irq(unsigned int irq, bool shared, const char *name,
			void *data)
{
	return request_irq(irq, ivshmem_irq, shared ? IRQF_SHARED : 0, name,
			   data);
}

vm_flags_t ivshmem_vm_mayshare(void)
{
	return VM_MAYSHARE;
}

int ivshmem_ioremap_cache_mode(const void *addr)
{
#ifdef CONFIG_X86
	unsigned int level;
	unsigned long bits;
	pgprot_t prot;
	pte_t *pte = lookup_address((unsigned long)addr, &level);

	if (!pte || !pte_present(*pte))
		return IVSHMEM_PCM_OTHER;
	prot = pte_pgprot(*pte);
	if (level != PG_LEVEL_4K)
		prot = pgprot_large_2_4k(prot);
	bits = pgprot_val(prot) & _PAGE_CACHE_MASK;
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_WB))
		return IVSHMEM_PCM_WB;
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_WC))
		return IVSHMEM_PCM_WC;
	if (bits == cachemode2protval(_PAGE_CACHE_MODE_UC_MINUS) ||
	    bits == cachemode2protval(_PAGE_CACHE_MODE_UC))
		return IVSHMEM_PCM_UC;
	return IVSHMEM_PCM_OTHER;
#else
	return IVSHMEM_PCM_NO_PAT;
#endif
}

vm_flags_t ivshmem_vm_exec(void)
{
	return VM_EXEC;
}

vm_flags_t ivshmem_vm_mayexec(void)
{
	return VM_MAYEXEC;
}

/*
 * Looking Glass-compatible nodes: /dev/kvmfrN in class "kvmfr", an alias of
 * /dev/ivshmemN (same N) whose open becomes an open of the misc device.
 */
static bool kvmfr_nodes = true;
module_param(kvmfr_nodes, bool, 0444);
MODULE_PARM_DESC(kvmfr_nodes,
		 "Also create /dev/kvmfrN (class kvmfr, Looking Glass) for /dev/ivshmemN (default: on)");

/* The kvmfr minors: one per device number, as /dev/ivshmemN has. */
#define IVSHMEM_KVMFR_MINORS (1U << 16)

/*
 * kvmfr_mtx guards the class, the region of device numbers, their user
 * count and kvmfr_miscs (minor -> miscdevice), as misc_mtx does for misc
 * devices: an open looks the misc device up and opens it under the mutex,
 * and a node's removal takes its entry out under it.
 */
static DEFINE_MUTEX(kvmfr_mtx);
static DEFINE_XARRAY(kvmfr_miscs);
static struct class *kvmfr_class;
static dev_t kvmfr_base;
static unsigned int kvmfr_users;

struct ivshmem_kvmfr_node {
	struct cdev *cdev;
	struct device *dev;
	dev_t devt;
};

/*
 * The open of a kvmfr node: hands the file to the misc device of the same
 * minor (misc_open()'s way), or -ENODEV once that device is gone.
 */
static int ivshmem_kvmfr_open(struct inode *inode, struct file *file)
{
	const struct file_operations *fops;
	struct miscdevice *misc;
	int err = -ENODEV;

	mutex_lock(&kvmfr_mtx);
	misc = xa_load(&kvmfr_miscs, iminor(inode));
	if (misc && MAJOR(inode->i_rdev) == MAJOR(kvmfr_base)) {
		fops = fops_get(misc->fops);
		if (fops) {
			file->private_data = misc;
			replace_fops(file, fops);
			err = file->f_op->open ? file->f_op->open(inode, file) : 0;
		}
	}
	mutex_unlock(&kvmfr_mtx);
	return err;
}

static const struct file_operations ivshmem_kvmfr_fops = {
	.owner = THIS_MODULE,
	.open = ivshmem_kvmfr_open,
	.llseek = noop_llseek,
};

/* Drops a user of the class and region; the last one frees them. */
static void ivshmem_kvmfr_put(void)
{
	lockdep_assert_held(&kvmfr_mtx);
	if (--kvmfr_users)
		return;
	class_destroy(kvmfr_class);
	unregister_chrdev_region(kvmfr_base, IVSHMEM_KVMFR_MINORS);
	kvmfr_class = NULL;
}

/* Takes a user of the class and region, making them on first use. */
static int ivshmem_kvmfr_get(void)
{
	struct class *class;
	int err;

	lockdep_assert_held(&kvmfr_mtx);
	if (kvmfr_users) {
		kvmfr_users++;
		return 0;
	}
	err = alloc_chrdev_region(&kvmfr_base, 0, IVSHMEM_KVMFR_MINORS,
				  "kvmfr");
	if (err)
		return err;
	class = class_create("kvmfr");
	if (IS_ERR(class)) {
		unregister_chrdev_region(kvmfr_base, IVSHMEM_KVMFR_MINORS);
		return PTR_ERR(class);
	}
	kvmfr_class = class;
	kvmfr_users = 1;
	return 0;
}

struct ivshmem_kvmfr_node *ivshmem_kvmfr_node_add(struct device *parent,
						  unsigned int index,
						  struct miscdevice *misc)
{
	struct ivshmem_kvmfr_node *node;
	struct device *dev;
	int err;

	if (!kvmfr_nodes)
		return NULL;
	if (index >= IVSHMEM_KVMFR_MINORS)
		return ERR_PTR(-EINVAL);
	node = kzalloc(sizeof(*node), GFP_KERNEL);
	if (!node)
		return ERR_PTR(-ENOMEM);

	mutex_lock(&kvmfr_mtx);
	err = ivshmem_kvmfr_get();
	if (err == -EEXIST) {
		mutex_unlock(&kvmfr_mtx);
		kfree(node);
		dev_info(parent,
			 "class kvmfr belongs to another module (kvmfr.ko?): no /dev/kvmfr%u\n",
			 index);
		return NULL;
	}
	if (err)
		goto unlock;
	node->devt = MKDEV(MAJOR(kvmfr_base), index);
	err = xa_insert(&kvmfr_miscs, index, misc, GFP_KERNEL);
	if (err)
		goto put;
	node->cdev = cdev_alloc();
	if (!node->cdev) {
		err = -ENOMEM;
		goto erase;
	}
	node->cdev->owner = THIS_MODULE;
	node->cdev->ops = &ivshmem_kvmfr_fops;
	err = cdev_add(node->cdev, node->devt, 1);
	if (err)
		goto free_cdev;
	dev = device_create(kvmfr_class, parent, node->devt, NULL, "kvmfr%u",
			    index);
	if (IS_ERR(dev)) {
		err = PTR_ERR(dev);
		cdev_del(node->cdev);
		goto erase;
	}
	node->dev = dev;
	mutex_unlock(&kvmfr_mtx);
	return node;

free_cdev:
	kobject_put(&node->cdev->kobj);
erase:
	xa_erase(&kvmfr_miscs, index);
put:
	ivshmem_kvmfr_put();
unlock:
	mutex_unlock(&kvmfr_mtx);
	kfree(node);
	return ERR_PTR(err);
}

void ivshmem_kvmfr_node_del(struct ivshmem_kvmfr_node *node)
{
	mutex_lock(&kvmfr_mtx);
	/* After this no open reaches the misc device through the node. */
	xa_erase(&kvmfr_miscs, MINOR(node->devt));
	device_unregister(node->dev);
	/* Open files keep the cdev (freed by the core) until they close. */
	cdev_del(node->cdev);
	ivshmem_kvmfr_put();
	mutex_unlock(&kvmfr_mtx);
	kfree(node);
}

/*
 * The file behind a mapping of the sysfs "shm" attribute. It is never
 * opened (only /proc/PID/map_files could reach it), so it has no
 * operations; its owner keeps the module loaded while a mapping lives, as
 * /dev/ivshmemN's file does.
 */
static const struct file_operations ivshmem_shm_fops = {
	.owner = THIS_MODULE,
};

struct file *ivshmem_vma_own_file(struct vm_area_struct *vma)
{
	struct file *file;

	file = anon_inode_create_getfile("[ivshmem-shm]", &ivshmem_shm_fops,
					 NULL, vma->vm_file->f_flags & O_ACCMODE,
					 NULL);
	if (IS_ERR(file))
		return file;
	/* The VMA takes its own reference, and drops the sysfs file's. */
	vma_set_file(vma, file);
	fput(file);
	return file;
}
