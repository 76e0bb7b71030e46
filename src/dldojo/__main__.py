from dldojo.cli import main

raise SystemExit(main())
