"""Build a small colour product catalog (+ "shopper photo" queries) from the
PNG emoji shipped in the npm package emoji-datasource-google (Noto Emoji artwork,
which nobody here drew): a stand-in for a user's own catalog in end-to-end runs.

    npm install emoji-datasource-google@16.0.0
    python -m benchmarks.emoji_catalog node_modules/emoji-datasource-google OUT
    lensflow data import OUT/catalog.csv --images OUT && lensflow retrain --auto-approve
    python -m benchmarks.photo_queries OUT/queries

Writes
  OUT/images/<UNIFIED>.png   64x64 RGBA PNGs, bytes copied as shipped
  OUT/catalog.csv            product_id,title,category,price,image_path
  OUT/queries/qNNN.jpg       30 synthetic shopper photos (5 with EXIF Orientation=6)
  OUT/queries/truth.csv      query_file,product_id,category

Only stdlib + Pillow. Deterministic: same package version + same Pillow give
byte-identical output.
"""

import csv
import hashlib
import json
import math
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

VENDOR = "google"  # img/<VENDOR>/64/<image>
SEED = 20240611
N_QUERIES = 30
N_EXIF = 5
FRAME = 256

# Category order (values unused placeholders kept for readability: rough price range)
CATEGORIES = {
    "Clothing": (9, 120),
    "Footwear": (25, 180),
    "Bags & Accessories": (8, 250),
    "Fruit": (0.5, 6),
    "Vegetables": (0.4, 5),
    "Drinks": (1, 40),
    "Kitchen & Household": (2, 400),
    "Sports & Games": (5, 150),
    "Musical Instruments": (60, 1500),
    "Tools": (4, 120),
    "Office & Stationery": (1, 60),
    "Electronics": (10, 900),
}

# emoji subcategory -> our category (whole subgroup, minus EXCLUDE)
SUBCATEGORY = {
    "clothing": "Clothing",  # split further by MOVE below
    "food-fruit": "Fruit",
    "food-vegetable": "Vegetables",
    "drink": "Drinks",
    "dishware": "Kitchen & Household",
    "household": "Kitchen & Household",
    "sport": "Sports & Games",
    "musical-instrument": "Musical Instruments",
    "tool": "Tools",
    "office": "Office & Stationery",
    "writing": "Office & Stationery",
    "book-paper": "Office & Stationery",
    "computer": "Electronics",
    "phone": "Electronics",
}

# Unicode names (as in emoji.json) moved to another category, or pulled in
# from subgroups not listed above.
MOVE = {
    # clothing subgroup -> footwear
    "THONG SANDAL": "Footwear",
    "MANS SHOE": "Footwear",
    "ATHLETIC SHOE": "Footwear",
    "HIKING BOOT": "Footwear",
    "FLAT SHOE": "Footwear",
    "HIGH-HEELED SHOE": "Footwear",
    "WOMANS SANDAL": "Footwear",
    "BALLET SHOES": "Footwear",
    "WOMANS BOOTS": "Footwear",
    # clothing subgroup -> accessories
    "EYEGLASSES": "Bags & Accessories",
    "SUNGLASSES": "Bags & Accessories",
    "GOGGLES": "Bags & Accessories",
    "FOLDING HAND FAN": "Bags & Accessories",
    "PURSE": "Bags & Accessories",
    "HANDBAG": "Bags & Accessories",
    "POUCH": "Bags & Accessories",
    "SHOPPING BAGS": "Bags & Accessories",
    "SCHOOL SATCHEL": "Bags & Accessories",
    "HAIR PICK": "Bags & Accessories",
    "CROWN": "Bags & Accessories",
    "WOMANS HAT": "Bags & Accessories",
    "TOP HAT": "Bags & Accessories",
    "GRADUATION CAP": "Bags & Accessories",
    "BILLED CAP": "Bags & Accessories",
    "RESCUE WORKER\u2019S HELMET": "Bags & Accessories",
    "MILITARY HELMET": "Bags & Accessories",
    "PRAYER BEADS": "Bags & Accessories",
    "LIPSTICK": "Bags & Accessories",
    "RING": "Bags & Accessories",
    "GEM STONE": "Bags & Accessories",
    # sport subgroup -> clothing
    "RUNNING SHIRT WITH SASH": "Clothing",
    "MARTIAL ARTS UNIFORM": "Clothing",
    # drink -> kitchen
    "TEAPOT": "Kitchen & Household",
    "BABY BOTTLE": "Kitchen & Household",
    # light & video
    "CANDLE": "Kitchen & Household",
    "ELECTRIC LIGHT BULB": "Kitchen & Household",
    "ELECTRIC TORCH": "Kitchen & Household",
    "MOVIE CAMERA": "Electronics",
    "FILM PROJECTOR": "Electronics",
    "TELEVISION": "Electronics",
    "CAMERA": "Electronics",
    "CAMERA WITH FLASH": "Electronics",
    "VIDEO CAMERA": "Electronics",
    "VIDEOCASSETTE": "Electronics",
    # music
    "STUDIO MICROPHONE": "Electronics",
    "MICROPHONE": "Electronics",
    "HEADPHONE": "Electronics",
    "RADIO": "Electronics",
    # game
    "VIDEO GAME": "Electronics",
    "JOYSTICK": "Electronics",
    "DIRECT HIT": "Sports & Games",
    "YO-YO": "Sports & Games",
    "KITE": "Sports & Games",
    "BILLIARDS": "Sports & Games",
    "GAME DIE": "Sports & Games",
    "JIGSAW PUZZLE PIECE": "Sports & Games",
    "TEDDY BEAR": "Sports & Games",
    "NESTING DOLLS": "Sports & Games",
    "CHESS PAWN": "Sports & Games",
    "PINATA": "Sports & Games",
    # arts & crafts, medical, science
    "ARTIST PALETTE": "Office & Stationery",
    "SPOOL OF THREAD": "Office & Stationery",
    "BALL OF YARN": "Office & Stationery",
    "SEWING NEEDLE": "Office & Stationery",
    "MICROSCOPE": "Electronics",
    "TELESCOPE": "Electronics",
    "ADHESIVE BANDAGE": "Kitchen & Household",
    "PACKAGE": "Office & Stationery",
    "KEY": "Tools",
    "LOCK": "Tools",
}

# Not a product one would sell (symbols, scenes, buildings, weapons, charts...)
EXCLUDE = {
    "POURING LIQUID",
    "CLINKING GLASSES",
    "CLINKING BEER MUGS",
    "ICE CUBE",
    "AMPHORA",
    "DOOR",
    "ELEVATOR",
    "WINDOW",
    "SHOWER",
    "BUBBLES",
    "SHOPPING TROLLEY",
    "FLAG IN HOLE",
    "GOAL NET",
    "HAMMER AND PICK",
    "DAGGER",
    "CROSSED SWORDS",
    "BOMB",
    "BOW AND ARROW",
    "SHIELD",
    "PROBING CANE",
    "LINK SYMBOL",
    "BROKEN CHAIN",
    "GEAR",
    "CHAINS",
    "BOOMERANG",
    "CHART WITH UPWARDS TREND",
    "CHART WITH DOWNWARDS TREND",
    "BAR CHART",
    "OPEN FILE FOLDER",
    "CARD INDEX",
    "LINKED PAPERCLIPS",
    "ROUND PUSHPIN",
    "TEAR-OFF CALENDAR",
    "SPIRAL CALENDAR",
    "MEMO",
    "PAGE WITH CURL",
    "PAGE FACING UP",
    "SCROLL",
    "ROLLED-UP NEWSPAPER",
    "BOOKMARK",
    "OPEN BOOK",
    "CLOSED BOOK",
    "NOTEBOOK WITH DECORATIVE COVER",
    "LOW BATTERY",
    "MOBILE PHONE WITH RIGHTWARDS ARROW AT LEFT",
    "TELEPHONE RECEIVER",
    "MINIDISC",
    "DVD",
    "ABACUS",
}

# Friendlier shop titles than the (legacy) Unicode names.
TITLE = {
    "WOMANS CLOTHES": "Women's blouse",
    "MANS SHOE": "Men's leather shoe",
    "ATHLETIC SHOE": "Running shoe",
    "WOMANS SANDAL": "Women's sandal",
    "WOMANS BOOTS": "Women's boots",
    "WOMANS HAT": "Women's sun hat",
    "THONG SANDAL": "Flip-flops",
    "FLAT SHOE": "Flat shoe",
    "RESCUE WORKER\u2019S HELMET": "Rescue helmet",
    "BILLED CAP": "Baseball cap",
    "SCHOOL SATCHEL": "School backpack",
    "GEM STONE": "Gemstone",
    "ONE-PIECE SWIMSUIT": "One-piece swimsuit",
    "RUNNING SHIRT WITH SASH": "Running vest",
    "MARTIAL ARTS UNIFORM": "Martial arts gi",
    "T-SHIRT": "T-shirt",
    "TANGERINE": "Tangerine",
    "KIWIFRUIT": "Kiwi fruit",
    "RED APPLE": "Red apple",
    "GREEN APPLE": "Green apple",
    "AUBERGINE": "Aubergine",
    "EAR OF MAIZE": "Corn on the cob",
    "LEAFY GREEN": "Leafy greens",
    "HOT PEPPER": "Chili pepper",
    "BROWN MUSHROOM": "Brown mushroom",
    "PEANUTS": "Peanuts",
    "HOT BEVERAGE": "Hot coffee",
    "TEACUP WITHOUT HANDLE": "Tea cup",
    "SAKE BOTTLE AND CUP": "Sake set",
    "BOTTLE WITH POPPING CORK": "Sparkling wine",
    "TROPICAL DRINK": "Tropical cocktail",
    "TUMBLER GLASS": "Whisky tumbler",
    "CUP WITH STRAW": "Soda cup",
    "BEVERAGE BOX": "Juice box",
    "MATE DRINK": "Mate",
    "GLASS OF MILK": "Glass of milk",
    "BABY BOTTLE": "Baby bottle",
    "FORK AND KNIFE WITH PLATE": "Dinner plate set",
    "FORK AND KNIFE": "Cutlery set",
    "HOCHO": "Kitchen knife",
    "JAR": "Glass jar",
    "COUCH AND LAMP": "Sofa with lamp",
    "MOUSE TRAP": "Mouse trap",
    "LOTION BOTTLE": "Lotion bottle",
    "ROLL OF PAPER": "Toilet paper",
    "BAR OF SOAP": "Bar of soap",
    "ELECTRIC LIGHT BULB": "Light bulb",
    "ELECTRIC TORCH": "Flashlight",
    "ADHESIVE BANDAGE": "Adhesive bandages",
    "SOCCER BALL": "Football",
    "BASKETBALL AND HOOP": "Basketball",
    "TENNIS RACQUET AND BALL": "Tennis racquet",
    "FLYING DISC": "Flying disc",
    "BOWLING": "Bowling ball and pins",
    "CRICKET BAT AND BALL": "Cricket bat",
    "FIELD HOCKEY STICK AND BALL": "Field hockey stick",
    "ICE HOCKEY STICK AND PUCK": "Ice hockey stick",
    "LACROSSE STICK AND BALL": "Lacrosse stick",
    "TABLE TENNIS PADDLE AND BALL": "Table tennis bat",
    "BADMINTON RACQUET AND SHUTTLECOCK": "Badminton racquet",
    "FISHING POLE AND FISH": "Fishing rod",
    "SKI AND SKI BOOT": "Skis",
    "DIRECT HIT": "Dartboard",
    "BILLIARDS": "Billiard ball",
    "GAME DIE": "Dice",
    "JIGSAW PUZZLE PIECE": "Jigsaw puzzle",
    "PINATA": "Pinata",
    "MUSICAL KEYBOARD": "Digital piano",
    "DRUM WITH DRUMSTICKS": "Snare drum",
    "LONG DRUM": "Conga drum",
    "HAMMER AND WRENCH": "Hammer and wrench set",
    "CARPENTRY SAW": "Hand saw",
    "NUT AND BOLT": "Nuts and bolts",
    "BALANCE SCALE": "Balance scale",
    "HOOK": "Hook",
    "PICK": "Pickaxe",
    "KEY": "Key blank",
    "LOCK": "Padlock",
    "BLACK SCISSORS": "Scissors",
    "CARD INDEX DIVIDERS": "Index dividers",
    "SPIRAL NOTEPAD": "Spiral notepad",
    "CARD FILE BOX": "Card file box",
    "FILE CABINET": "File cabinet",
    "WASTEBASKET": "Wastebasket",
    "STRAIGHT RULER": "Ruler",
    "TRIANGULAR RULER": "Set square",
    "PUSHPIN": "Push pins",
    "BLACK NIB": "Calligraphy nib",
    "FOUNTAIN PEN": "Fountain pen",
    "PEN": "Ballpoint pen",
    "PAINTBRUSH": "Paintbrush",
    "GREEN BOOK": "Green hardback book",
    "BLUE BOOK": "Blue hardback book",
    "ORANGE BOOK": "Orange hardback book",
    "BOOKS": "Book set",
    "BOOKMARK TABS": "Bookmark tabs",
    "LABEL": "Gift tag",
    "PACKAGE": "Cardboard box",
    "ARTIST PALETTE": "Paint palette",
    "SPOOL OF THREAD": "Spool of thread",
    "BALL OF YARN": "Ball of yarn",
    "ELECTRIC PLUG": "Power plug",
    "PERSONAL COMPUTER": "Laptop",
    "DESKTOP COMPUTER": "Desktop computer",
    "KEYBOARD": "Computer keyboard",
    "COMPUTER MOUSE": "Computer mouse",
    "OPTICAL DISC": "CD",
    "FLOPPY DISK": "Floppy disk",
    "MOBILE PHONE": "Smartphone",
    "BLACK TELEPHONE": "Desk telephone",
    "FAX MACHINE": "Fax machine",
    "MOVIE CAMERA": "Cine camera",
    "CAMERA WITH FLASH": "Camera with flash",
    "VIDEOCASSETTE": "Video cassette",
    "STUDIO MICROPHONE": "Studio microphone",
    "MICROPHONE": "Karaoke microphone",
    "HEADPHONE": "Headphones",
    "VIDEO GAME": "Game controller",
}


def nice_title(name):
    if name in TITLE:
        return TITLE[name]
    t = name.lower()
    return t[0].upper() + t[1:]


# Typical shelf price per title (rough, plausible); a deterministic +-12%
# jitter keyed on the emoji code point is applied on top.
BASE_PRICE = {
    # Clothing
    "Martial arts gi": 45,
    "Running vest": 25,
    "Lab coat": 35,
    "Safety vest": 12,
    "Necktie": 30,
    "T-shirt": 15,
    "Jeans": 60,
    "Scarf": 25,
    "Gloves": 20,
    "Coat": 150,
    "Socks": 8,
    "Dress": 70,
    "Kimono": 120,
    "Sari": 80,
    "One-piece swimsuit": 40,
    "Briefs": 12,
    "Shorts": 25,
    "Bikini": 35,
    "Women's blouse": 40,
    # Footwear
    "Flip-flops": 15,
    "Men's leather shoe": 110,
    "Running shoe": 90,
    "Hiking boot": 130,
    "Flat shoe": 55,
    "High-heeled shoe": 95,
    "Women's sandal": 45,
    "Ballet shoes": 30,
    "Women's boots": 140,
    # Bags & Accessories
    "Eyeglasses": 120,
    "Sunglasses": 60,
    "Goggles": 25,
    "Folding hand fan": 12,
    "Purse": 40,
    "Handbag": 150,
    "Pouch": 20,
    "Shopping bags": 10,
    "School backpack": 45,
    "Hair pick": 5,
    "Crown": 30,
    "Women's sun hat": 35,
    "Top hat": 50,
    "Graduation cap": 20,
    "Baseball cap": 20,
    "Military helmet": 70,
    "Rescue helmet": 60,
    "Prayer beads": 15,
    "Lipstick": 18,
    "Ring": 250,
    "Gemstone": 400,
    # Fruit (each / per pack)
    "Grapes": 3.5,
    "Melon": 3,
    "Watermelon": 5,
    "Tangerine": 0.6,
    "Lemon": 0.5,
    "Lime": 0.5,
    "Banana": 0.3,
    "Pineapple": 2.5,
    "Mango": 1.5,
    "Red apple": 0.7,
    "Green apple": 0.7,
    "Pear": 0.8,
    "Peach": 0.9,
    "Cherries": 4.5,
    "Strawberry": 3.5,
    "Blueberries": 3.5,
    "Kiwi fruit": 0.5,
    "Tomato": 0.5,
    "Olive": 4,
    "Coconut": 2.5,
    # Vegetables
    "Avocado": 1.5,
    "Aubergine": 1.2,
    "Potato": 0.4,
    "Carrot": 0.3,
    "Corn on the cob": 0.8,
    "Chili pepper": 0.4,
    "Bell pepper": 1,
    "Cucumber": 0.8,
    "Leafy greens": 2,
    "Broccoli": 1.5,
    "Garlic": 0.6,
    "Onion": 0.4,
    "Peanuts": 3,
    "Beans": 2.5,
    "Chestnut": 5,
    "Ginger root": 1.5,
    "Pea pod": 2.5,
    "Brown mushroom": 2.5,
    "Root vegetable": 1,
    # Drinks
    "Glass of milk": 1.5,
    "Hot coffee": 3.5,
    "Tea cup": 3,
    "Sake set": 35,
    "Sparkling wine": 25,
    "Wine glass": 8,
    "Cocktail glass": 10,
    "Tropical cocktail": 9,
    "Beer mug": 5,
    "Whisky tumbler": 12,
    "Soda cup": 2.5,
    "Bubble tea": 5.5,
    "Juice box": 1.2,
    "Mate": 6,
    # Kitchen & Household
    "Baby bottle": 12,
    "Teapot": 35,
    "Chopsticks": 6,
    "Dinner plate set": 40,
    "Cutlery set": 35,
    "Spoon": 4,
    "Kitchen knife": 45,
    "Glass jar": 5,
    "Candle": 8,
    "Light bulb": 6,
    "Flashlight": 20,
    "Adhesive bandages": 5,
    "Mirror": 60,
    "Bed": 450,
    "Sofa with lamp": 700,
    "Chair": 80,
    "Toilet": 250,
    "Plunger": 10,
    "Bathtub": 600,
    "Mouse trap": 6,
    "Razor": 15,
    "Lotion bottle": 9,
    "Safety pin": 3,
    "Broom": 15,
    "Basket": 20,
    "Toilet paper": 6,
    "Bucket": 9,
    "Bar of soap": 3,
    "Toothbrush": 4,
    "Sponge": 3,
    "Fire extinguisher": 45,
    # Sports & Games
    "Football": 25,
    "Baseball": 8,
    "Softball": 9,
    "Basketball": 30,
    "Volleyball": 25,
    "American football": 30,
    "Rugby football": 30,
    "Tennis racquet": 90,
    "Flying disc": 12,
    "Bowling ball and pins": 60,
    "Cricket bat": 80,
    "Field hockey stick": 60,
    "Ice hockey stick": 70,
    "Lacrosse stick": 65,
    "Table tennis bat": 25,
    "Badminton racquet": 35,
    "Boxing glove": 45,
    "Ice skate": 90,
    "Fishing rod": 55,
    "Diving mask": 30,
    "Skis": 350,
    "Sled": 60,
    "Curling stone": 450,
    "Dartboard": 40,
    "Yo-yo": 6,
    "Kite": 20,
    "Billiard ball": 12,
    "Dice": 4,
    "Jigsaw puzzle": 18,
    "Teddy bear": 25,
    "Pinata": 22,
    "Nesting dolls": 30,
    "Chess pawn": 25,
    # Musical Instruments
    "Saxophone": 900,
    "Accordion": 1200,
    "Guitar": 300,
    "Digital piano": 600,
    "Trumpet": 450,
    "Violin": 350,
    "Banjo": 280,
    "Snare drum": 200,
    "Conga drum": 250,
    "Maracas": 20,
    "Flute": 400,
    "Harp": 1500,
    # Tools
    "Padlock": 12,
    "Key blank": 3,
    "Hammer": 18,
    "Axe": 40,
    "Pickaxe": 45,
    "Hammer and wrench set": 35,
    "Hand saw": 25,
    "Wrench": 15,
    "Screwdriver": 8,
    "Nuts and bolts": 6,
    "Clamp": 14,
    "Balance scale": 45,
    "Hook": 4,
    "Toolbox": 40,
    "Magnet": 5,
    "Ladder": 90,
    "Shovel": 30,
    # Office & Stationery
    "Paint palette": 8,
    "Spool of thread": 3,
    "Sewing needle": 2,
    "Ball of yarn": 6,
    "Green hardback book": 18,
    "Blue hardback book": 18,
    "Orange hardback book": 18,
    "Book set": 45,
    "Notebook": 6,
    "Ledger": 12,
    "Newspaper": 2.5,
    "Bookmark tabs": 4,
    "Gift tag": 3,
    "Cardboard box": 3,
    "Pencil": 1,
    "Calligraphy nib": 5,
    "Fountain pen": 40,
    "Ballpoint pen": 2,
    "Paintbrush": 5,
    "Crayon": 4,
    "Briefcase": 120,
    "File folder": 3,
    "Index dividers": 4,
    "Calendar": 12,
    "Spiral notepad": 4,
    "Clipboard": 6,
    "Push pins": 3,
    "Paperclip": 2,
    "Ruler": 3,
    "Set square": 4,
    "Scissors": 8,
    "Card file box": 15,
    "File cabinet": 180,
    "Wastebasket": 15,
    # Electronics
    "Game controller": 60,
    "Joystick": 45,
    "Studio microphone": 130,
    "Karaoke microphone": 35,
    "Headphones": 80,
    "Radio": 50,
    "Smartphone": 600,
    "Desk telephone": 40,
    "Pager": 30,
    "Fax machine": 150,
    "Battery": 5,
    "Power plug": 8,
    "Laptop": 900,
    "Desktop computer": 800,
    "Printer": 150,
    "Computer keyboard": 50,
    "Computer mouse": 25,
    "Trackball": 60,
    "Floppy disk": 2,
    "CD": 10,
    "Cine camera": 250,
    "Film projector": 300,
    "Television": 500,
    "Camera": 450,
    "Camera with flash": 480,
    "Video camera": 400,
    "Video cassette": 5,
    "Microscope": 180,
    "Telescope": 220,
}


def price_for(unified, title):
    base = BASE_PRICE[title]
    h = int(hashlib.sha256(("price:" + unified).encode()).hexdigest()[:12], 16)
    p = base * (0.88 + 0.24 * (h % 10_000) / 10_000.0)
    if p < 10:
        return f"{max(0.19, math.floor(p * 10) / 10 + 0.09):.2f}"
    return "%.2f" % (math.floor(p) + 0.99)


def select(entries):
    picked = []
    for e in entries:
        name = e["name"]
        if name in EXCLUDE:
            continue
        cat = MOVE.get(name) or SUBCATEGORY.get(e["subcategory"])
        if cat is None or not e.get("has_img_" + VENDOR):
            continue
        picked.append((cat, e))
    order = list(CATEGORIES)
    picked.sort(key=lambda ce: (order.index(ce[0]), ce[1]["sort_order"], ce[1]["unified"]))
    return picked


# ---------------------------------------------------------------- queries ---
def _noise(rng, size, scale):
    w, h = max(1, size[0] // scale), max(1, size[1] // scale)
    img = Image.frombytes("L", (w, h), rng.randbytes(w * h))
    return img.resize(size, Image.BICUBIC)


def make_background(rng):
    """Photographic-ish backdrop: lit gradient + texture + bokeh blobs."""
    kind = rng.choice(["wood", "fabric", "wall", "bokeh", "solid"])
    base = tuple(rng.randint(40, 220) for _ in range(3))
    other = tuple(max(0, min(255, c + rng.randint(-70, 70))) for c in base)
    # vertical/diagonal light gradient
    big = Image.linear_gradient("L").resize((2 * FRAME, 2 * FRAME))
    grad = big.rotate(rng.uniform(0, 360), resample=Image.BICUBIC).crop(
        (FRAME // 2, FRAME // 2, FRAME // 2 + FRAME, FRAME // 2 + FRAME)
    )
    bg = Image.composite(Image.new("RGB", (FRAME, FRAME), base), Image.new("RGB", (FRAME, FRAME), other), grad)
    if kind == "wood":
        streak = _noise(rng, (FRAME, FRAME), 1).resize((4, FRAME)).resize((FRAME, FRAME), Image.BICUBIC)
        if rng.random() < 0.5:
            streak = streak.transpose(Image.Transpose.ROTATE_90)
        dark = Image.new("RGB", (FRAME, FRAME), tuple(c // 2 for c in base))
        bg = Image.composite(bg, dark, streak.point(lambda v: 120 + v // 2))
    elif kind == "fabric":
        tex = _noise(rng, (FRAME, FRAME), 2).filter(ImageFilter.GaussianBlur(0.6))
        bg = Image.blend(bg, Image.merge("RGB", [tex] * 3), 0.18)
    elif kind == "wall":
        tex = _noise(rng, (FRAME, FRAME), 16).filter(ImageFilter.GaussianBlur(6))
        bg = Image.blend(bg, Image.merge("RGB", [tex] * 3), 0.25)
    elif kind == "bokeh":
        layer = bg.copy()
        d = ImageDraw.Draw(layer)
        for _ in range(rng.randint(6, 14)):
            r = rng.randint(10, 45)
            x, y = rng.randint(-20, FRAME + 20), rng.randint(-20, FRAME + 20)
            col = tuple(rng.randint(120, 255) for _ in range(3))
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        bg = Image.blend(bg, layer.filter(ImageFilter.GaussianBlur(9)), 0.6)
    # vignette + sensor noise
    vig = Image.radial_gradient("L").resize((FRAME, FRAME)).point(lambda v: int(v * 0.45))
    bg = Image.composite(Image.new("RGB", (FRAME, FRAME), (0, 0, 0)), bg, vig)
    grain = _noise(rng, (FRAME, FRAME), 1)
    bg = Image.blend(bg, Image.merge("RGB", [grain] * 3), 0.06)
    return bg, kind


def make_query(src_png, rng):
    bg, kind = make_background(rng)
    obj = Image.open(src_png).convert("RGBA")
    frac = rng.uniform(0.60, 0.90)
    side = int(round(FRAME * frac))
    obj = obj.resize((side, side), Image.LANCZOS)
    angle = rng.uniform(-20, 20)
    obj = obj.rotate(angle, resample=Image.BICUBIC, expand=True)
    # soft drop shadow
    alpha = obj.getchannel("A")
    shadow = Image.new("RGBA", obj.size, (0, 0, 0, 0))
    shadow.putalpha(alpha.point(lambda v: v * 90 // 255).filter(ImageFilter.GaussianBlur(5)))
    # off-centre placement; up to ~12% of the object may leave the frame
    w, h = obj.size
    slack_x, slack_y = FRAME - w, FRAME - h
    mx, my = int(0.12 * w), int(0.12 * h)
    lo_x, hi_x = min(0, slack_x) - mx // 2, max(0, slack_x) + mx // 2
    lo_y, hi_y = min(0, slack_y) - my // 2, max(0, slack_y) + my // 2
    cx, cy = (lo_x + hi_x) // 2, (lo_y + hi_y) // 2
    for _ in range(20):  # insist on being visibly off-centre
        x, y = rng.randint(lo_x, hi_x), rng.randint(lo_y, hi_y)
        if abs(x - cx) + abs(y - cy) >= 8 or (hi_x - lo_x) + (hi_y - lo_y) < 16:
            break
    canvas = bg.convert("RGBA")
    for im, off in ((shadow, (x + 4, y + 5)), (obj, (x, y))):  # paste clips negative offsets
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        layer.paste(im, off)
        canvas = Image.alpha_composite(canvas, layer)
    canvas = canvas.convert("RGB")
    # camera-ish: slight blur, exposure shift
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))
    gain = rng.uniform(0.85, 1.12)
    canvas = canvas.point(lambda v: max(0, min(255, int(v * gain))))
    return canvas, dict(kind=kind, frac=round(frac, 3), angle=round(angle, 1), x=x, y=y)


def build(pkg_dir, out_dir):
    pkg_dir, out_dir = Path(pkg_dir), Path(out_dir)
    entries = json.loads((pkg_dir / "emoji.json").read_text(encoding="utf-8"))
    version = json.loads((pkg_dir / "package.json").read_text())["version"]
    img_dir = pkg_dir / "img" / VENDOR / "64"
    if out_dir.exists() and any(out_dir.iterdir()):
        sys.exit(f"{out_dir} is not empty: give a new folder (nothing there was changed)")
    (out_dir / "images").mkdir(parents=True)
    (out_dir / "queries").mkdir()

    rows = []
    for i, (cat, e) in enumerate(select(entries), 1):
        src = img_dir / e["image"]
        with Image.open(src) as im:  # check it really is a single PNG picture
            assert im.format == "PNG" and im.size == (64, 64), (src, im.format, im.size)
        rel = "images/{}.png".format(e["unified"].upper())
        shutil.copyfile(src, out_dir / rel)
        rows.append(
            dict(
                product_id=f"sku-{i:04d}",
                title=nice_title(e["name"]),
                category=cat,
                price=price_for(e["unified"], nice_title(e["name"])),
                image_path=rel,
            )
        )
    with open(out_dir / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["product_id", "title", "category", "price", "image_path"])
        w.writeheader()
        w.writerows(rows)

    # ---- queries: stratified pick, at least 2 per category, then fill
    rng = random.Random(SEED)
    by_cat = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(r)
    chosen = []
    for cat in CATEGORIES:
        chosen += rng.sample(by_cat[cat], min(2, len(by_cat[cat])))
    rest = [r for r in rows if r not in chosen]
    chosen += rng.sample(rest, N_QUERIES - len(chosen))
    rng.shuffle(chosen)
    exif_idx = set(rng.sample(range(N_QUERIES), N_EXIF))

    truth = []
    for qi, r in enumerate(chosen):
        img, meta = make_query(out_dir / r["image_path"], rng)
        name = f"q{qi + 1:03d}.jpg"
        quality = rng.randint(70, 90)
        path = out_dir / "queries" / name
        if qi in exif_idx:
            # Store pixels rotated 90° CCW; Orientation 6 tells viewers to
            # rotate 90° CW for display, which brings it back upright.
            stored = img.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            stored.save(path, "JPEG", quality=quality, exif=exif.tobytes())
            with Image.open(path) as chk:
                assert chk.getexif().get(0x0112) == 6
                up = ImageOps.exif_transpose(chk)
                assert up.size == img.size
        else:
            img.save(path, "JPEG", quality=quality)
        truth.append(dict(query_file=name, product_id=r["product_id"], category=r["category"]))
        print(
            f"{name} {r['product_id']} {r['category']:<22} q={quality} exif6={qi in exif_idx} {meta}",
            file=sys.stderr,
        )
    with open(out_dir / "queries" / "truth.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["query_file", "product_id", "category"])
        w.writeheader()
        w.writerows(truth)
    print(f"emoji-datasource-{VENDOR} {version}: {len(rows)} products, {len(truth)} queries -> {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.emoji_catalog PACKAGE_DIR OUT_DIR")
    build(sys.argv[1], sys.argv[2])
