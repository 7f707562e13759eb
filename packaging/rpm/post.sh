# %post: after every install and upgrade ($1 = 1 install, 2 or more upgrade).
if [ "$1" -gt 1 ]; then /usr/lib/frazil/package-setup upgrade; else /usr/lib/frazil/package-setup install; fi
