from ice_exp.cli import main

main()
