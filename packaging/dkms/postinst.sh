# shellcheck shell=sh
# idgate-dkms postinst body (shared by the .deb and .rpm; @VERSION@ substituted).
# Builds and installs idgate.ko for every kernel whose headers are installed,
# loads it into the running kernel when that one got it, and makes it load at
# boot (modules-load.d). A kernel it does not build for is reported, never
# fatal: idgate then runs its procfs backend and says why.
v=@VERSION@
dkms add -m idgate -v "$v" >/dev/null 2>&1 || true
built=0 failed=0
for build in /lib/modules/*/build; do
	[ -e "$build/Makefile" ] || continue
	k=${build#/lib/modules/}; k=${k%/build}
	if dkms build -m idgate -v "$v" -k "$k" >/dev/null 2>&1 && dkms install -m idgate -v "$v" -k "$k" --force >/dev/null 2>&1; then
		echo "idgate-dkms: idgate.ko built and installed for $k"
		built=$((built + 1))
	else
		echo "idgate-dkms: idgate.ko does not build for $k; idgate runs its procfs backend there (see /var/lib/dkms/idgate/$v/build/make.log)"
		failed=$((failed + 1))
	fi
done
[ $built -gt 0 ] || [ $failed -gt 0 ] || echo "idgate-dkms: no kernel headers installed: install linux-headers-\$(uname -r), then: dpkg-reconfigure idgate-dkms"
if [ -e "/lib/modules/$(uname -r)/updates/dkms/idgate.ko" ] || [ -e "/lib/modules/$(uname -r)/updates/dkms/idgate.ko.xz" ]; then
	if modprobe idgate 2>/dev/null; then
		echo "idgate-dkms: idgate.ko loaded"
		# A running idgate picks the kmod backend up on restart.
		if [ -d /run/systemd/system ] && systemctl -q is-active idgate.service 2>/dev/null; then
			systemctl try-restart idgate.service || true
		fi
	else
		echo "idgate-dkms: idgate.ko did not load into $(uname -r); idgate runs its procfs backend"
	fi
fi
exit 0
