one.o: build/headers/one.c src/util/json_scan.h
src/util/json_scan.h:
