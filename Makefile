# SPDX-License-Identifier: GPL-2.0
#
# ivshmem: a Rust-for-Linux guest driver for QEMU's inter-VM shared memory.
#
#   make                   build the module against the project's guest
#                          kernel: build/<flavour>/ivshmem.ko (the first run
#                          sets up the toolchain and builds the kernel)
#   make KDIR=/path/linux  build against your own built, Rust-enabled kernel
#                          tree, the usual out-of-tree way: ./ivshmem.ko
#   make debian [KRELEASE=7.3.4+deb13-amd64]
#                          on a Debian system: build ivshmem.ko for an
#                          installed Debian kernel (the running one by
#                          default): build/debian/<release>/ivshmem.ko
#   make deb               build the ivshmem-dkms package: build/deb/
#   make stock [KERNEL=trixie|sid|trixie-7.2]
#                          build the module for one of Debian's stock
#                          kernels in that kernel's build root (no kernel
#                          build): build/stock/<KERNEL>/ivshmem.ko
#   make demo [KERNEL=trixie|sid]
#                          build for Debian's stock kernel (trixie: 7.3.x
#                          from trixie-backports, the default; sid: 7.2.x)
#                          and run a short demo in QEMU
#   make check             run the whole test suite (what .ci/run calls)
#   make bench [QUICK=1]   benchmarks on Debian's stock kernel against what
#                          users would use instead (docs/benchmarks.md);
#                          QUICK=1: tiny sizes, only so that it cannot rot
#   make stress [QUICK=1] [SEED=N]
#                          the stress campaign on the debug kernel: the
#                          seeded fuzzer, unbind/bind, QMP hot-unplug and
#                          insmod/rmmod cycles, two guests ringing at full
#                          speed (about 25 minutes; QUICK=1: the slice
#                          make check runs)
#   make kernel            build (or find in the cache) the guest kernel
#   make clean
#
# FLAVOUR=test (default, debug kernel) or FLAVOUR=release picks the guest
# kernel. The module source is Kbuild + rust/.

FLAVOUR ?= test
LLVM ?= 1

ifneq ($(KDIR),)
KBUILD := $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM)
else
KBUILD := scripts/kmake.sh $(FLAVOUR)
endif

KRELEASE ?= $(shell uname -r)
KERNEL ?= trixie

.PHONY: all modules clean kernel demo check debian deb stock bench stress

all: modules

modules:
	$(KBUILD) modules

clean:
	$(KBUILD) clean
	rm -rf build

kernel:
	scripts/setup-toolchain.sh
	scripts/build-kernel.sh $(FLAVOUR)

debian:
	scripts/build-debian-module.sh $(KRELEASE) --out build/debian/$(KRELEASE)

deb:
	scripts/build-deb.sh

stock:
	scripts/build-stock.sh $(KERNEL)

demo:
	scripts/demo.sh $(KERNEL)

check:
	scripts/check.sh

bench:
	scripts/bench.sh $(if $(QUICK),--quick)

stress:
	scripts/stress.sh $(if $(QUICK),--quick) $(if $(SEED),--seed $(SEED))
