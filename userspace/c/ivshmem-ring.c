// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * ivshmem-ring: a C user of the doorbell API in uapi/linux/ivshmem.h.
 * Rings PEER on VECTOR, then polls the device for up to five seconds and
 * prints the events that arrive, one "event vector=V count=C" line each.
 *
 *   ivshmem-ring /dev/ivshmem0 PEER VECTOR
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/ivshmem.h>

int main(int argc, char **argv)
{
	struct ivshmem_ring ring;
	struct ivshmem_event events[16];
	struct pollfd pfd;
	ssize_t n;
	int fd, i;

	if (argc != 4) {
		fprintf(stderr, "usage: %s DEVICE PEER VECTOR\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	memset(&ring, 0, sizeof(ring));
	ring.peer = (__u16)atoi(argv[2]);
	ring.vector = (__u16)atoi(argv[3]);
	if (ioctl(fd, IVSHMEM_IOCTL_RING, &ring) < 0) {
		fprintf(stderr, "IVSHMEM_IOCTL_RING: %s\n", strerror(errno));
		return 1;
	}
	printf("rang peer %u vector %u\n", ring.peer, ring.vector);

	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 5000) <= 0 || !(pfd.revents & POLLIN)) {
		printf("no event within 5 s\n");
		return 1;
	}
	n = read(fd, events, sizeof(events));
	if (n < 0) {
		fprintf(stderr, "read: %s\n", strerror(errno));
		return 1;
	}
	for (i = 0; i < n / (ssize_t)sizeof(events[0]); i++)
		printf("event vector=%u count=%u\n", events[i].vector, events[i].count);
	close(fd);
	return 0;
}
