from lightft.cli import main

main()
