from callipso_agent.cli import main

raise SystemExit(main())
