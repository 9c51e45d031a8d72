try:
    from rotnet.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: no traceback either
    raise SystemExit(130) from None

raise SystemExit(main())
