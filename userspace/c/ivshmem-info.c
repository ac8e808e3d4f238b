// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * ivshmem-info: a C user of uapi/linux/ivshmem.h. Prints what
 * IVSHMEM_IOCTL_INFO says about a device, then maps its first page and
 * prints the NUL-terminated text found there (at most 64 bytes), and
 * optionally writes a text back.
 *
 *   ivshmem-info /dev/ivshmem0 [TEXT-TO-WRITE]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/ivshmem.h>

int main(int argc, char **argv)
{
	struct ivshmem_info info;
	const char *path = argc > 1 ? argv[1] : "/dev/ivshmem0";
	char text[65];
	long page = sysconf(_SC_PAGESIZE);
	char *mem;
	int fd;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return 1;
	}
	memset(&info, 0, sizeof(info));
	if (ioctl(fd, IVSHMEM_IOCTL_INFO, &info) < 0) {
		fprintf(stderr, "IVSHMEM_IOCTL_INFO: %s\n", strerror(errno));
		return 1;
	}
	printf("index=%u size=%llu ivposition=%d vectors=%u features=%#x flags=%#x revision=%u pci=%04x:%02x:%02x.%u\n",
	       info.index, (unsigned long long)info.size, info.ivposition, info.vectors, info.features,
	       info.flags, info.revision, info.pci_domain, info.pci_bus, info.pci_devfn >> 3,
	       info.pci_devfn & 7);

	mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "mmap: %s\n", strerror(errno));
		return 1;
	}
	memcpy(text, mem, 64);
	text[64] = '\0';
	printf("text=%s\n", text);
	if (argc > 2)
		strncpy(mem, argv[2], 64);
	munmap(mem, page);
	close(fd);
	return 0;
}
