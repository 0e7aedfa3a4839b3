from maas.cli import main

main()
