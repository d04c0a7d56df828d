from docpulse.cli import main

raise SystemExit(main())
