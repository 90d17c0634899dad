# The two commands of the README: `make build` and `make test`.
# Both create .venv/ on first use with the project and its pinned dependencies.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

# Debian packages the tests run: shellcheck over the user data, ruby -c over gitlab.rb; the
# real programs of the boot tests (tests/support/boot.py): sshd -t, a PostgreSQL server, a Redis
# server (TLS only, like ElastiCache with transit encryption), nginx,
# slirp4netns (a network for the servers' namespaces), ip, curl, openssl; for the Gitaly volume
# and the image builder (tests/support/disk.py): sfdisk, cloud-init, gpg.
# COMMAND or COMMAND:PACKAGE when the package is named otherwise.
TEST_TOOLS := promtool:prometheus shellcheck ruby sfdisk:fdisk cloud-init gpg ip:iproute2 sshd:openssh-server \
	pg_ctlcluster:postgresql redis-server nginx slirp4netns curl openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

CHECKOV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV)/.installed-$(shell cat requirements-checkov.txt | sha256sum | cut -c1-12)
STANDIN := .venv-standin
STANDIN_STAMP := $(STANDIN)/.installed-$(shell cat requirements-standin.txt | sha256sum | cut -c1-12)
AWSCLI := .venv-awscli
AWSCLI_STAMP := $(AWSCLI)/.installed-$(shell cat requirements-awscli.txt | sha256sum | cut -c1-12)

.PHONY: build lint check test test-tools diagram-tools standin awscli scanner bench mutants e2e clean distclean help

help:
	@echo "make build   create .venv and .venv-checkov, compile build/, lint and scan every template"
	@echo "make test    install test dependencies and the local AWS stand-in, run the whole suite"
	@echo "make bench   median whole-process timings of build (every config), lint and check"
	@echo "make mutants one-line bugs (ports, locks, TLS, grants, egress, bake) the suite must catch"
	@echo "make e2e     the taskcat matrix in real AWS regions (needs credentials; skipped without)"
	@echo "make clean   remove build/ ; make distclean also removes .venv/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gitlab-cfn needs Python 3.11 or later")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip check
	rm -f $(VENV)/.installed-*
	touch $@

# A tool in a virtual environment of its own: $(call tool-venv,DIR,REQUIREMENTS).
define tool-venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -r $(2)
	rm -f $(1)/.installed-*
	touch $@
endef

# checkov, the scanner of `gitlab-cfn check`, in its own virtual environment.
$(CHECKOV_STAMP): requirements-checkov.txt
	$(call tool-venv,$(CHECKOV),requirements-checkov.txt)

scanner: $(CHECKOV_STAMP)

build: $(STAMP) $(CHECKOV_STAMP) diagram-tools
	$(BIN)/gitlab-cfn build
	$(BIN)/gitlab-cfn diagram
	$(BIN)/gitlab-cfn lint
	$(BIN)/gitlab-cfn check

# Graphviz's dot, which gitlab-cfn diagram draws with (the diagrams package is a Python dependency).
diagram-tools:
	@command -v dot >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; }

lint: $(STAMP)
	$(BIN)/gitlab-cfn lint

check: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/gitlab-cfn check

# Installed without starting their services (a policy-rc.d refusing starts, unless one exists):
# the tests start their own PostgreSQL, sshd -t and nginx, isolated in namespaces.
test-tools:
	@missing=$$(for t in $(TEST_TOOLS); do c=$${t%%:*}; command -v $$c >/dev/null || [ -x /usr/sbin/$$c ] || echo $${t#*:}; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing" $$missing "from Debian's packages"; \
	  policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && \
	    $(SUDO) chmod 755 /usr/sbin/policy-rc.d && policy=/usr/sbin/policy-rc.d; fi; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  status=$$?; [ -z "$$policy" ] || $(SUDO) rm -f $$policy; \
	  case " $$missing " in *" cloud-init "*) \
	    echo "cloud-init is installed for its 'clean' command only: disabled at boot (/etc/cloud/cloud-init.disabled)"; \
	    $(SUDO) touch /etc/cloud/cloud-init.disabled;; esac; \
	  exit $$status; \
	fi

# The AWS CLI that runs inside the booted test servers, in its own virtual environment.
$(AWSCLI_STAMP): requirements-awscli.txt
	$(call tool-venv,$(AWSCLI),requirements-awscli.txt)

awscli: $(AWSCLI_STAMP)

# The local AWS stand-in (moto's server) in its own virtual environment.
$(STANDIN_STAMP): requirements-standin.txt
	$(call tool-venv,$(STANDIN),requirements-standin.txt)

standin: $(STANDIN_STAMP)

test: $(STAMP) $(CHECKOV_STAMP) $(STANDIN_STAMP) $(AWSCLI_STAMP) test-tools diagram-tools
	$(BIN)/python -m pytest

# Timings are a benchmark, not a test: a loaded machine must not fail CI.
bench: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python tests/bench.py

# One-line bugs the suite must catch, each run against the tests meant to catch it (minutes).
mutants: $(STAMP) $(CHECKOV_STAMP) $(STANDIN_STAMP) $(AWSCLI_STAMP) test-tools
	$(BIN)/python tests/mutants.py

# Real AWS, opt-in: skipped (and says so) without credentials. Not part of `make test`.
e2e: $(STAMP) $(CHECKOV_STAMP)
	scripts/e2e.sh

clean:
	rm -rf build build-three-az build-no-bastion build-3k

distclean: clean
	rm -rf $(VENV) $(STANDIN) $(CHECKOV) $(AWSCLI)
