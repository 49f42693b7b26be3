"""``python -m devbox_native``: the same entry as the ``devbox-native`` command."""

from devbox_native._entry import main

raise SystemExit(main())
