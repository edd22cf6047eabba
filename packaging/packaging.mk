# packaging/packaging.mk: the install layout and the .deb and .rpm packages.
# Included by the top-level Makefile.
#
#   make install DESTDIR=DIR   install the programs and their files under DIR
#   make deb                   Debian package in $(BUILD)/pkg/
#   make rpm                   RPM (and source RPM) in $(BUILD)/pkg/
#
# Packages are built out of tree: the sources are copied into $(BUILD)/pkg/ and
# built there, so the work tree needs neither to be clean nor to be a git
# checkout; the copies are removed after the build (the logs stay). The version
# comes from VERSION alone: the Debian changelog and the spec's Version are
# written from it at build time.

PREFIX      ?= /usr
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share/strait
SYSCONFDIR  ?= /etc
UNITDIR     ?= /usr/lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
INSTALL     ?= install

PKG_DIR     := $(BUILD)/pkg
PKG_SOURCES := Makefile VERSION README.md LICENSE common config tunnel replicator gateway packaging
PKG_MAINTAINER = $(shell sed -n 's/^Maintainer: //p' packaging/debian/control)
# Dates in the generated changelog: SOURCE_DATE_EPOCH, else the last commit, else now.
PKG_EPOCH   = $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),$(shell date +%s))

DEB_ARCH    = $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
# Debian's rpm database knows none of the spec's BuildRequires.
RPMBUILD_FLAGS ?= $(if $(wildcard /etc/debian_version),--nodeps)
DEB_SRC     := $(PKG_DIR)/deb/strait-$(VERSION)
RPM_TOP     := $(abspath $(PKG_DIR)/rpm)

.PHONY: install deb rpm

# On a live system (no DESTDIR) an existing /etc/strait/strait.yaml is kept;
# run systemd-sysusers and systemd-tmpfiles --create afterwards.
install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR) \
		$(DESTDIR)$(SYSCONFDIR)/strait $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	$(INSTALL) -m 0755 $(BUILD)/straitd $(DESTDIR)$(SBINDIR)/straitd
	$(INSTALL) -m 0755 $(BUILD)/straitctl $(DESTDIR)$(BINDIR)/straitctl
	$(INSTALL) -m 0644 packaging/man/strait.yaml.5 $(DESTDIR)$(MANDIR)/man5/strait.yaml.5
	$(INSTALL) -m 0644 packaging/man/straitd.8 packaging/man/straitctl.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 packaging/systemd/strait.service $(DESTDIR)$(UNITDIR)/strait.service
	$(INSTALL) -m 0644 packaging/systemd/strait.sysusers $(DESTDIR)$(SYSUSERSDIR)/strait.conf
	$(INSTALL) -m 0644 packaging/systemd/strait.tmpfiles $(DESTDIR)$(TMPFILESDIR)/strait.conf
	$(INSTALL) -m 0644 packaging/prometheus/strait-alerts.yml $(DESTDIR)$(DATADIR)/strait-alerts.yml
	$(INSTALL) -m 0644 packaging/strait.yaml $(DESTDIR)$(DATADIR)/strait.yaml.example
	$(Q)if [ -n "$(DESTDIR)" ] || [ ! -e $(SYSCONFDIR)/strait/strait.yaml ]; then \
		$(INSTALL) -m 0644 packaging/strait.yaml $(DESTDIR)$(SYSCONFDIR)/strait/strait.yaml; \
	else echo "  KEEP    $(SYSCONFDIR)/strait/strait.yaml"; fi

# Copies the sources a package build needs (not the build trees, not .git) into $(1).
define pkg_copy_sources
	$(Q)rm -rf $(1) && mkdir -p $(1)
	$(Q)tar -cf - --exclude='*.o' --exclude=__pycache__ $(PKG_SOURCES) | tar -xf - -C $(1)
endef

deb:
	@echo "  DEB     $(PKG_DIR)/strait_$(VERSION)_$(DEB_ARCH).deb"
	$(call pkg_copy_sources,$(DEB_SRC))
	$(Q)cp -r packaging/debian $(DEB_SRC)/debian
	$(Q){ printf 'strait (%s) unstable; urgency=medium\n\n' '$(VERSION)'; \
	  printf '  * strait %s.\n\n' '$(VERSION)'; \
	  printf ' -- %s  %s\n' '$(PKG_MAINTAINER)' "$$(LC_ALL=C date -u -R -d @$(PKG_EPOCH))"; \
	} > $(DEB_SRC)/debian/changelog
	$(Q)(cd $(DEB_SRC) && SOURCE_DATE_EPOCH=$(PKG_EPOCH) dpkg-buildpackage -b -us -uc -Jauto \
		> ../build.log 2>&1); status=$$?; rm -rf $(DEB_SRC); \
	if [ $$status -ne 0 ]; then tail -n 40 $(PKG_DIR)/deb/build.log; \
		echo "deb: failed, see $(PKG_DIR)/deb/build.log"; exit 1; fi
	$(Q)cp $(PKG_DIR)/deb/strait_$(VERSION)_$(DEB_ARCH).deb $(PKG_DIR)/

rpm:
	@echo "  RPM     $(PKG_DIR)/strait-$(VERSION)-1.*.rpm"
	$(Q)rm -rf $(RPM_TOP) && mkdir -p $(RPM_TOP)/SOURCES $(RPM_TOP)/SPECS
	$(call pkg_copy_sources,$(RPM_TOP)/strait-$(VERSION))
	$(Q)tar -czf $(RPM_TOP)/SOURCES/strait-$(VERSION).tar.gz -C $(RPM_TOP) strait-$(VERSION)
	$(Q)rm -rf $(RPM_TOP)/strait-$(VERSION)
	$(Q)sed -e 's/@VERSION@/$(VERSION)/g' \
		-e "s/@DATE@/$$(LC_ALL=C date -u -d @$(PKG_EPOCH) '+%a %b %d %Y')/" \
		-e 's/@MAINTAINER@/$(PKG_MAINTAINER)/' \
		packaging/rpm/strait.spec > $(RPM_TOP)/SPECS/strait.spec
	$(Q)SOURCE_DATE_EPOCH=$(PKG_EPOCH) rpmbuild -ba $(RPMBUILD_FLAGS) --define '_topdir $(RPM_TOP)' \
		--define 'packager $(PKG_MAINTAINER)' \
		$(RPM_TOP)/SPECS/strait.spec > $(RPM_TOP)/build.log 2>&1; status=$$?; \
	rm -rf $(RPM_TOP)/BUILD $(RPM_TOP)/BUILDROOT; \
	if [ $$status -ne 0 ]; then tail -n 40 $(RPM_TOP)/build.log; \
		echo "rpm: failed, see $(RPM_TOP)/build.log"; exit 1; fi
	$(Q)rm -f $(PKG_DIR)/strait-*.rpm && cp $(RPM_TOP)/RPMS/*/strait-*.rpm $(RPM_TOP)/SRPMS/strait-*.src.rpm $(PKG_DIR)/
