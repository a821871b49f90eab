#!/bin/sh
# Installs inger's C API: libinger.so, libinger.a, libinger.h and pkg-config files.
#
#   crates/inger-c/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR]
#                             [--target-dir DIR] [--no-build]
#
# PREFIX defaults to $PREFIX or /usr/local; libdir to PREFIX/lib; DESTDIR (for packaging)
# to $DESTDIR or nothing. Unless --no-build is given, the libraries are first built with
# `cargo build --release -p inger-c`. Afterwards, with PREFIX/lib/pkgconfig on
# PKG_CONFIG_PATH (it is by default for /usr/local):
#
#   cc prog.c $(pkg-config --cflags --libs inger)          # links libinger.so
#   cc prog.c $(pkg-config --cflags --libs inger-static)   # links libinger.a
#
# A program linked with libinger.so finds it at run time if libdir is in the loader's path
# (/usr/local/lib is; run ldconfig after installing there), else through LD_LIBRARY_PATH or
# -Wl,-rpath,LIBDIR.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${PREFIX:-/usr/local}
libdir=
destdir=${DESTDIR:-}
target_dir=${CARGO_TARGET_DIR:-$root/target}
build=yes

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --libdir) libdir=$2; shift 2 ;;
        --libdir=*) libdir=${1#*=}; shift ;;
        --destdir) destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --target-dir) target_dir=$2; shift 2 ;;
        --target-dir=*) target_dir=${1#*=}; shift ;;
        --no-build) build=no; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in
    /*) ;;
    *) echo "install.sh: the prefix must be an absolute path: $prefix" >&2; exit 2 ;;
esac
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include

if [ "$build" = yes ]; then
    cargo build --release --package inger-c --manifest-path "$root/Cargo.toml" --target-dir "$target_dir"
fi
release=$target_dir/release
for library in libinger.so libinger.a; do
    if [ ! -f "$release/$library" ]; then
        echo "install.sh: $release/$library is missing (build first, or drop --no-build)" >&2
        exit 1
    fi
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
# What rustc reports with --print native-static-libs for this crate.
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

install -d "$destdir$libdir" "$destdir$libdir/pkgconfig" "$destdir$includedir"
install -m 755 "$release/libinger.so" "$destdir$libdir/libinger.so"
install -m 644 "$release/libinger.a" "$destdir$libdir/libinger.a"
install -m 644 "$root/include/libinger.h" "$destdir$includedir/libinger.h"
for pc in inger inger-static; do
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@INCLUDEDIR@|$includedir|g" \
        -e "s|@VERSION@|$version|g" -e "s|@STATIC_LIBS@|$static_libs|g" \
        "$here/$pc.pc.in" > "$destdir$libdir/pkgconfig/$pc.pc"
    chmod 644 "$destdir$libdir/pkgconfig/$pc.pc"
done
echo "installed inger $version into $destdir$prefix (libraries in $destdir$libdir)"
