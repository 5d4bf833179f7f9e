from lockgate.cli import main

raise SystemExit(main())
