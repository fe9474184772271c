#!/bin/sh
# fetch-bounces.sh DIR: check out the public bounce collections `make corpus-check BOUNCES=DIR`
# reads, at the commits its figures were taken at. They are read where they are, never copied
# into this repository.
set -eu
dir=${1:?usage: fetch-bounces.sh DIR}
mkdir -p "$dir"
get() { # name url commit
	if [ ! -d "$dir/$1/.git" ]; then
		git clone --quiet --filter=blob:none "$2" "$dir/$1"
	fi
	git -C "$dir/$1" checkout --quiet "$3"
}
get Mail-DeliveryStatus-BounceParser https://github.com/rjbs/Mail-DeliveryStatus-BounceParser 3133a16
get emailengine https://github.com/postalsys/emailengine aea4535
get gnu-mailman https://github.com/jurov/gnu-mailman 255348a9
echo "now: make corpus-check BOUNCES=$dir"
