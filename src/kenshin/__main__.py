from kenshin.cli import main

main()
