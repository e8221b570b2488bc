from gpumkt.cli import main

main()
