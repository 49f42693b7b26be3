"""``python -m devbox_native``."""

from devbox_native.cli import main

raise SystemExit(main())
