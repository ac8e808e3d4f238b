#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Usage: mount-overlay.sh ROOT OVL
#
# Mounts a throw-away overlay of the Debian system ROOT (or LAYER:ROOT, a
# kernel layer's upper directory over its root) at OVL/merged
# (changes go to OVL/upper; OVL comes from lib.sh's overlay_new), with
# /dev, /proc and /sys, ready for chroot. Run it inside a private mount
# namespace (unshare --mount --propagation private): the mounts are that
# namespace's and go with it.
set -eu
root=$1 ovl=$2
m=$ovl/merged
mount -t overlay overlay -o "lowerdir=$root,upperdir=$ovl/upper,workdir=$ovl/work" "$m"
mount --rbind /dev "$m/dev"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
