from ice_exp.apps.discover import main

main()
