from rotnet.cli import main

raise SystemExit(main())
