# SPDX-License-Identifier: GPL-2.0
#
# ivshmem: a Rust-for-Linux guest driver for QEMU's inter-VM shared memory.
#
#   make                   build the module against the project's guest
#                          kernel: build/<flavour>/ivshmem.ko (the first run
#                          sets up the toolchain and builds the kernel)
#   make KDIR=/path/linux  build against your own built, Rust-enabled kernel
#                          tree, the usual out-of-tree way: ./ivshmem.ko
#   make demo              build everything and run a short demo in QEMU
#   make check             run the whole test suite (what .ci/run calls)
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

.PHONY: all modules clean kernel demo check

all: modules

modules:
	$(KBUILD) modules

clean:
	$(KBUILD) clean
	rm -rf build

kernel:
	scripts/setup-toolchain.sh
	scripts/build-kernel.sh $(FLAVOUR)

demo:
	scripts/demo.sh

check:
	scripts/check.sh
